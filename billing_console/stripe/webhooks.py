"""The core's Stripe receivers: checkout attempts, customers and their subscription fields.

They run first for their event types (billing_console is the first console app), inside the
worker's transaction; licensing, deployments and dunning receivers for the same event run after
and find the Customer by `subscription_id` or `stripe_customer_id`. invoice.* events are left to
the invoices and dunning receivers (the dispatcher passes every type through). The lifecycle
(trials, refunds, disputes, discounts, subscriptions from outside Checkout) is in lifecycle.py.
"""
from billing_console.stripe import lifecycle
from billing_console.stripe import objects as so
from billing_console.stripe.checkout import checkout_session_complete, checkout_session_expire_apply
from billing_console.stripe.dispatch import preparer, receiver
from billing_console.stripe.subscriptions import customer_stripe_update_apply

SUBSCRIPTION_EVENTS = ("customer.subscription.created", "customer.subscription.updated",
                       "customer.subscription.deleted", "customer.subscription.paused",
                       "customer.subscription.resumed")


@receiver("checkout.session.completed")
def checkout_completed(event: dict) -> None:
    checkout_session_complete(session=so.event_object(event), event_created=so.event_created(event))


@receiver("checkout.session.expired")
def checkout_expired(event: dict) -> None:
    checkout_session_expire_apply(session=so.event_object(event))


# Outside the transaction: reads Stripe's customer when a subscription from elsewhere needs its email.
preparer(*SUBSCRIPTION_EVENTS)(lifecycle.subscription_customer_prepare)


@receiver(*SUBSCRIPTION_EVENTS)
def subscription_changed(event: dict) -> None:
    lifecycle.subscription_event_receive(event=event)


@receiver("customer.updated")
def customer_updated(event: dict) -> None:
    stripe_customer = so.event_object(event)
    customer_stripe_update_apply(stripe_customer=stripe_customer, state_at=so.event_created(event))
    lifecycle.unlinked_subscription_link_from_customer(stripe_customer=stripe_customer)


@receiver("customer.subscription.trial_will_end")
def trial_will_end(event: dict) -> None:
    lifecycle.trial_will_end_receive(event=event)


@receiver("invoice.payment_action_required")
def payment_action_required(event: dict) -> None:
    lifecycle.payment_action_required_receive(event=event)


@receiver("customer.discount.created", "customer.discount.updated", "customer.discount.deleted")
def discount_changed(event: dict) -> None:
    lifecycle.customer_discount_receive(event=event)


@receiver("charge.refunded", "charge.refund.updated", "refund.created", "refund.updated")
def refunded(event: dict) -> None:
    lifecycle.charge_refund_receive(event=event)


DISPUTE_EVENTS = ("charge.dispute.created", "charge.dispute.updated", "charge.dispute.closed",
                  "charge.dispute.funds_withdrawn", "charge.dispute.funds_reinstated")
preparer("charge.dispute.created")(lifecycle.dispute_charge_prepare)


@receiver(*DISPUTE_EVENTS)
def dispute_changed(event: dict) -> None:
    lifecycle.dispute_receive(event=event)
