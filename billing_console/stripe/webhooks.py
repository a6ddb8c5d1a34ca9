"""The core's Stripe receivers: checkout attempts, customers and their subscription fields.

They run first for their event types (billing_console is the first console app), inside the
worker's transaction; licensing, deployments and dunning receivers for the same event run after
and find the Customer by `subscription_id` or `stripe_customer_id`. invoice.* events are left to
the invoices and dunning receivers (the dispatcher passes every type through).
"""
from billing_console.stripe import objects as so
from billing_console.stripe.checkout import checkout_session_complete, checkout_session_expire_apply
from billing_console.stripe.dispatch import receiver
from billing_console.stripe.subscriptions import customer_stripe_update_apply, subscription_event_apply


@receiver("checkout.session.completed")
def checkout_completed(event: dict) -> None:
    checkout_session_complete(session=so.event_object(event), event_created=so.event_created(event))


@receiver("checkout.session.expired")
def checkout_expired(event: dict) -> None:
    checkout_session_expire_apply(session=so.event_object(event))


@receiver("customer.subscription.created", "customer.subscription.updated", "customer.subscription.deleted",
          "customer.subscription.paused", "customer.subscription.resumed")
def subscription_changed(event: dict) -> None:
    subscription_event_apply(subscription=so.event_object(event), state_at=so.event_created(event))


@receiver("customer.updated")
def customer_updated(event: dict) -> None:
    customer_stripe_update_apply(stripe_customer=so.event_object(event), state_at=so.event_created(event))
