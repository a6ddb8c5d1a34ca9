"""Stripe events that concern deployments: pause when a customer is hard-locked or canceled, resume when
payment returns. The decision reads the customer after the whole event has been applied (dunning's receivers
run after these and may lift or set the lock), so it runs on commit; the hourly push reconciles the same
way, so a lock set without any event (dunning's daily policy) is caught too."""
from __future__ import annotations

from django.db import transaction
from django.db.models import Q

from billing_console.models import AuditEvent, Customer
from billing_console.stripe.dispatch import receiver
from deployments.services import deployments_sync_pauses


def _id(value) -> str:
    if isinstance(value, dict):
        value = value.get("id")
    return value if isinstance(value, str) else ""


def _invoice_subscription(invoice: dict) -> str:
    parent = invoice.get("parent") or {}
    details = parent.get("subscription_details") or {} if isinstance(parent, dict) else {}
    return _id(details.get("subscription")) or _id(invoice.get("subscription"))


@receiver("customer.subscription.updated", "customer.subscription.deleted", "invoice.paid")
def sync_deployment_pauses(event: dict) -> None:
    obj = (event.get("data") or {}).get("object") or {}
    if event.get("type", "").startswith("invoice."):
        subscription_id = _invoice_subscription(obj)
    else:
        subscription_id = _id(obj.get("id"))
    stripe_customer_id = _id(obj.get("customer"))
    match = Q()
    if subscription_id:
        match |= Q(subscription_id=subscription_id)
    if stripe_customer_id:
        match |= Q(stripe_customer_id=stripe_customer_id)
    if not match:
        return
    event_id = str(event.get("id", ""))[:100]
    for customer in Customer.objects.filter(match).filter(deployments__isnull=False).distinct():
        transaction.on_commit(
            lambda c=customer: deployments_sync_pauses(customer=c, actor_type=AuditEvent.ActorType.STRIPE, actor=event_id),
            robust=True)
