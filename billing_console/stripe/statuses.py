"""Stripe's subscription and invoice statuses, and the sets the console decides by.

Every app asks these sets instead of spelling statuses out, so "is this subscription over" has one
answer everywhere (entitlement, rebuild, reconciliation, dunning, deployments).
"""
from django.db import models


class SubscriptionStatus(models.TextChoices):
    INCOMPLETE = "incomplete", "Incomplete"
    INCOMPLETE_EXPIRED = "incomplete_expired", "Incomplete, expired"
    TRIALING = "trialing", "Trialing"
    ACTIVE = "active", "Active"
    PAST_DUE = "past_due", "Past due"
    UNPAID = "unpaid", "Unpaid"
    PAUSED = "paused", "Paused"
    CANCELED = "canceled", "Canceled"


class InvoiceStatus(models.TextChoices):
    DRAFT = "draft", "Draft"
    OPEN = "open", "Open"
    UNCOLLECTIBLE = "uncollectible", "Uncollectible"
    PAID = "paid", "Paid"
    VOID = "void", "Void"


# Paid up: the product works.
ENTITLED = frozenset({SubscriptionStatus.ACTIVE, SubscriptionStatus.TRIALING})
# A payment failed: still entitled inside the grace the dunning policy gives.
PAST_DUE = frozenset({SubscriptionStatus.PAST_DUE, SubscriptionStatus.UNPAID})
# Over for good: a subscription id in these states never comes back.
ENDED = frozenset({SubscriptionStatus.CANCELED, SubscriptionStatus.INCOMPLETE_EXPIRED})
# Stripe still charges it (reconciliation compares what it collects).
PAYING = ENTITLED | {SubscriptionStatus.PAST_DUE}

# An invoice moves only forward through these ranks (paid and void are both final).
INVOICE_STATUS_RANK = {InvoiceStatus.DRAFT: 0, InvoiceStatus.OPEN: 1, InvoiceStatus.UNCOLLECTIBLE: 2,
                       InvoiceStatus.PAID: 3, InvoiceStatus.VOID: 3}
# Finalized and not voided: an invoice the customer is billed by (it has a number and can be emailed).
INVOICE_FINALIZED = frozenset({InvoiceStatus.OPEN, InvoiceStatus.UNCOLLECTIBLE, InvoiceStatus.PAID})
