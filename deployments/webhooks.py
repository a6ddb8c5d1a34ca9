"""Stripe events that concern deployments: pause when a customer is hard-locked or canceled, resume when
payment returns. The decision reads the customer after the whole event has been applied (dunning's receivers
run after these and may lift or set the lock), so it runs on commit; the hourly push reconciles the same
way, so a lock set without any event (dunning's daily policy) is caught too."""
from __future__ import annotations

from django.db import transaction

from billing_console.models import AuditEvent
from billing_console.selectors import customer_for_stripe_object
from billing_console.stripe import objects as so
from billing_console.stripe.dispatch import Stage, receiver
from deployments.models import Deployment
from deployments.services import deployments_sync_pauses


@receiver("customer.subscription.updated", "customer.subscription.deleted", "invoice.paid",
          stage=Stage.DEPLOYMENTS)
def sync_deployment_pauses(event: dict) -> None:
    customer = customer_for_stripe_object(so.event_object(event))
    if customer is None or not Deployment.objects.filter(customer=customer).exists():
        return
    event_id = str(event.get("id", ""))[:100]
    transaction.on_commit(
        lambda: deployments_sync_pauses(customer=customer, actor_type=AuditEvent.ActorType.STRIPE, actor=event_id),
        robust=True)
