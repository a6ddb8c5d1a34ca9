"""Stripe receivers of the licensing app. They run at Stage.LICENSING, after the core's receivers for
the same event, which have already brought the Customer's subscription fields up to date; here we
only make sure the subscription has its licence (or follows a plan change). Idempotent per event and per object.
"""
from __future__ import annotations

import logging

from billing_console.models import AuditEvent, Customer, Dispute
from billing_console.selectors import customer_for_stripe_object
from billing_console.stripe import objects as so
from billing_console.stripe.dispatch import Stage, receiver
from licensing.services import license_ensure

log = logging.getLogger("licensing")


@receiver("checkout.session.completed", "customer.subscription.created", "customer.subscription.updated",
          stage=Stage.LICENSING)
def provision_license(event: dict) -> None:
    obj = so.event_object(event)
    if obj.get("object") == "checkout.session" and obj.get("mode") != "subscription":
        return
    subscription_id = so.customer_keys(obj)["subscription_id"]
    customer = customer_for_stripe_object(obj)
    if customer is None:
        # Nothing to attach a licence to yet; the next event for this subscription provisions it.
        log.info("no customer yet for %s; licence not provisioned by %s", subscription_id or "-", event.get("id"),
                 extra={"event": "license_provision_deferred", "stripe_event": event.get("id")})
        return
    license_ensure(customer=customer, actor_type=AuditEvent.ActorType.STRIPE, actor=event.get("id", ""))


@receiver("charge.dispute.closed", stage=Stage.LICENSING)
def provision_license_after_dispute(event: dict) -> None:
    """A dispute that locked access (DISPUTE_LOCKS_ACCESS) may have kept a first payment's subscription from
    getting its licence; once it closes, the core's receiver has cleared the flag and the licence is issued."""
    dispute_id = so.event_object(event).get("id")
    customer_id = Dispute.objects.filter(stripe_id=str(dispute_id or "")).values_list("customer_id", flat=True).first()
    customer = Customer.objects.filter(pk=customer_id).first() if customer_id else None
    if customer is None or customer.dispute_open:
        return
    license_ensure(customer=customer, actor_type=AuditEvent.ActorType.STRIPE, actor=event.get("id", ""))
