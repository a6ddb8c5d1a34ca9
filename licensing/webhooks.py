"""Stripe receivers of the licensing app. They run after the core's receivers for the same event,
which have already brought the Customer's subscription fields up to date; here we only make sure
the subscription has its licence (or follows a plan change). Idempotent per event and per object.
"""
from __future__ import annotations

import logging

from billing_console.models import AuditEvent, Customer
from billing_console.stripe import objects as so
from billing_console.stripe.dispatch import receiver
from licensing.services import license_ensure

log = logging.getLogger("licensing")


def _customer_for(subscription_id: str, stripe_customer_id: str) -> Customer | None:
    if subscription_id:
        customer = Customer.objects.filter(subscription_id=subscription_id).first()
        if customer is not None:
            return customer
    if stripe_customer_id:
        return Customer.objects.filter(stripe_customer_id=stripe_customer_id).first()
    return None


@receiver("checkout.session.completed", "customer.subscription.created", "customer.subscription.updated")
def provision_license(event: dict) -> None:
    obj = so.event_object(event)
    if obj.get("object") == "checkout.session":
        if obj.get("mode") != "subscription":
            return
        subscription_id = so.obj_id(obj.get("subscription"))
    else:
        subscription_id = so.obj_id(obj.get("id"))
    customer = _customer_for(subscription_id, so.obj_id(obj.get("customer")))
    if customer is None:
        # Nothing to attach a licence to yet; the next event for this subscription provisions it.
        log.info("no customer yet for %s; licence not provisioned by %s", subscription_id or "-", event.get("id"),
                 extra={"event": "license_provision_deferred", "stripe_event": event.get("id")})
        return
    license_ensure(customer=customer, actor_type=AuditEvent.ActorType.STRIPE, actor=event.get("id", ""))
