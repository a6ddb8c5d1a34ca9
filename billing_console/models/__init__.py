"""Core nouns, one module per domain; every model is importable from here (tables unchanged).

Fields, choices, constraints and small properties only; every write lives in services.
"""
from billing_console.models.customers import E164, Customer, ManageLinkDelivery, new_salt
from billing_console.models.invoicing import (Cohort, CohortAccountReview, DriftItem, Invoice, InvoiceEvent, LedgerEntry,
                                              ReconciliationRun, StripeImportCursor)
from billing_console.models.lifecycle import Dispute, UnlinkedSubscription
from billing_console.models.ops import Alert, AuditEvent, CronRun, Heartbeat
from billing_console.models.stripe import CheckoutAttempt, CheckoutSwitch, InboxWake, WebhookEvent
from billing_console.models.usage import UsageEvent, UsageReport

__all__ = [
    "E164", "new_salt", "Customer", "ManageLinkDelivery", "CheckoutAttempt", "CheckoutSwitch", "WebhookEvent", "InboxWake", "Invoice",
    "InvoiceEvent", "LedgerEntry", "ReconciliationRun", "DriftItem", "StripeImportCursor", "Cohort", "CohortAccountReview",
    "CronRun", "AuditEvent", "UnlinkedSubscription", "Dispute", "Heartbeat", "Alert", "UsageEvent", "UsageReport",
]
