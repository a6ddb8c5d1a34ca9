"""The core's Stripe receivers: checkout attempts, customers and their subscription fields, and the
lifecycle (trials, refunds, disputes, subscriptions made outside Checkout: lifecycle.py) and discounts
(discounts.py).

They run first for their event types (Stage.CORE), inside the worker's transaction; licensing,
deployments and dunning receivers for the same event run after and find the Customer through
`customer_for_stripe_object`. invoice.* events are left to the invoices and dunning receivers (the
dispatcher passes every type through; a type nobody handles is stored and marked ignored).
"""
from billing_console.stripe import discounts, lifecycle
from billing_console.stripe import objects as so
from billing_console.stripe.checkout import (checkout_session_complete, checkout_session_expire_apply,
                                             checkout_session_subscription)
from billing_console.stripe.dispatch import Stage, prepared, preparer, receiver
from billing_console.stripe.subscriptions import customer_stripe_update_apply, customer_stripe_update_reread

SUBSCRIPTION_EVENTS = ("customer.subscription.created", "customer.subscription.updated",
                       "customer.subscription.deleted", "customer.subscription.paused",
                       "customer.subscription.resumed")
DISPUTE_EVENTS = ("charge.dispute.created", "charge.dispute.updated", "charge.dispute.closed",
                  "charge.dispute.funds_withdrawn", "charge.dispute.funds_reinstated")


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


# Outside the transaction: reads Stripe's customer when a subscription from elsewhere needs its email, and
# the subscription's discounts with their coupons when it names them by id and the console lacks them.
preparer(*SUBSCRIPTION_EVENTS)(lifecycle.subscription_customer_prepare)
preparer(*SUBSCRIPTION_EVENTS)(discounts.subscription_discounts_prepare)


@receiver(*SUBSCRIPTION_EVENTS, stage=Stage.CORE)
def subscription_changed(event: dict) -> None:
    lifecycle.subscription_event_receive(event=event)


@preparer("customer.updated")
def read_customer_if_unordered(event: dict) -> dict:
    return {"stripe_customer": customer_stripe_update_reread(stripe_customer=so.event_object(event),
                                                             state_at=so.event_created(event))}


@receiver("customer.updated", stage=Stage.CORE)
def customer_updated(event: dict) -> None:
    found = prepared(event)
    stripe_customer = so.event_object(event)
    customer_stripe_update_apply(stripe_customer=stripe_customer, state_at=so.event_created(event),
                                 current=(found or {}).get("stripe_customer"), may_read_stripe=found is None)
    lifecycle.unlinked_subscription_link_from_customer(stripe_customer=stripe_customer)


@receiver("customer.subscription.trial_will_end", stage=Stage.CORE)
def trial_will_end(event: dict) -> None:
    lifecycle.trial_will_end_receive(event=event)


@receiver("invoice.payment_action_required", stage=Stage.CORE)
def payment_action_required(event: dict) -> None:
    lifecycle.payment_action_required_receive(event=event)


DISCOUNT_EVENTS = ("customer.discount.created", "customer.discount.updated", "customer.discount.deleted")
# Outside the transaction: the coupon's details, which the pinned API sends by id only.
preparer(*DISCOUNT_EVENTS)(discounts.discount_coupon_prepare)


@receiver(*DISCOUNT_EVENTS, stage=Stage.CORE)
def discount_changed(event: dict) -> None:
    discounts.customer_discount_receive(event=event)


@receiver("charge.refunded", "charge.refund.updated", "refund.created", "refund.updated", stage=Stage.CORE)
def refunded(event: dict) -> None:
    lifecycle.charge_refund_receive(event=event)


preparer("charge.dispute.created")(lifecycle.dispute_charge_prepare)


@receiver(*DISPUTE_EVENTS, stage=Stage.CORE)
def dispute_changed(event: dict) -> None:
    lifecycle.dispute_receive(event=event)
