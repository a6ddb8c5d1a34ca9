"""The core's Stripe receivers: checkout attempts, customers and their subscription fields.

They run first for their event types (Stage.CORE), inside the worker's transaction; licensing,
deployments and dunning receivers for the same event run after and find the Customer through
`customer_for_stripe_object`. invoice.* events are left to
the invoices and dunning receivers (the dispatcher passes every type through).
"""
from billing_console.stripe import objects as so
from billing_console.stripe.checkout import (checkout_session_complete, checkout_session_expire_apply,
                                             checkout_session_subscription)
from billing_console.stripe.dispatch import Stage, prepared, preparer, receiver
from billing_console.stripe.subscriptions import (customer_stripe_update_apply, customer_stripe_update_reread,
                                                  subscription_event_apply)


@preparer("checkout.session.completed")
def read_checkout_subscription(event: dict) -> dict:
    return {"subscription": checkout_session_subscription(so.event_object(event))}


@receiver("checkout.session.completed", stage=Stage.CORE)
def checkout_completed(event: dict) -> None:
    checkout_session_complete(session=so.event_object(event), event_created=so.event_created(event),
                              subscription=(prepared(event) or {}).get("subscription"))


@receiver("checkout.session.expired", stage=Stage.CORE)
def checkout_expired(event: dict) -> None:
    checkout_session_expire_apply(session=so.event_object(event))


@receiver("customer.subscription.created", "customer.subscription.updated", "customer.subscription.deleted",
          "customer.subscription.paused", "customer.subscription.resumed", stage=Stage.CORE)
def subscription_changed(event: dict) -> None:
    subscription_event_apply(subscription=so.event_object(event), state_at=so.event_created(event))


@receiver("customer.updated", stage=Stage.CORE)
def customer_updated(event: dict) -> None:
    found = prepared(event)
    customer_stripe_update_apply(stripe_customer=so.event_object(event), state_at=so.event_created(event),
                                 current=(found or {}).get("stripe_customer"), may_read_stripe=found is None)


@preparer("customer.updated")
def read_customer_if_unordered(event: dict) -> dict:
    return {"stripe_customer": customer_stripe_update_reread(stripe_customer=so.event_object(event),
                                                             state_at=so.event_created(event))}
