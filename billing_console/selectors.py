"""Reads shared by views, admin and APIs. The entitlement selector is the one answer to
"may this customer use the product now, why, and until when" -- licences, deployments and pages ask it.
"""
from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta

from django.conf import settings
from django.db.models import QuerySet
from django.utils import timezone

from billing_console.models import CheckoutAttempt, Customer
from billing_console.stripe import objects as so
from billing_console.stripe.statuses import ENDED, ENTITLED, PAST_DUE, SubscriptionStatus


class Reason:
    VALID = "VALID"
    PAST_DUE = "PAST_DUE"  # payment failed, inside the grace days: still entitled
    PAST_DUE_SOFT_LOCK = "PAST_DUE_SOFT_LOCK"  # past grace: still entitled, told to pay
    HARD_LOCKED = "HARD_LOCKED"
    CANCELED = "CANCELED"
    EXPIRED = "EXPIRED"  # period (plus offline grace) ran out without a renewal we know of
    INCOMPLETE = "INCOMPLETE"  # first payment never completed
    UNPAID = "UNPAID"  # retries ran out and Stripe keeps the subscription open but unpaid
    PAUSED = "PAUSED"  # paused (status, or pause_collection): PAUSED_SUBSCRIPTION_ENTITLED decides
    DISPUTED = "DISPUTED"  # an open dispute, when DISPUTE_LOCKS_ACCESS is on
    NO_SUBSCRIPTION = "NO_SUBSCRIPTION"




def customer_for_stripe_object(obj: dict, *, queryset: QuerySet | None = None) -> Customer | None:
    """The console customer a Stripe object (subscription, invoice, checkout session, customer, or
    anything with a `customer` field) belongs to, or None. Every receiver and service asks this.

    Precedence, most specific first:
    1. the subscription id (one subscription belongs to one console customer, even after the person
       moved to a new Stripe customer);
    2. the Stripe customer id;
    3. the checkout token the console put in the session's / subscription's metadata, through the
       checkout attempt it names (a subscription event may arrive before the customer is linked);
    4. the email, only from checkout sessions and Stripe customers, where the person typed it.
    `queryset` (e.g. `Customer.objects.select_for_update()`) lets a write path lock the row it finds.
    """
    return customer_by_stripe_keys(queryset=queryset, **so.customer_keys(obj))


def customer_by_stripe_keys(*, subscription_id: str = "", stripe_customer_id: str = "", checkout_token: str = "",
                            email: str = "", queryset: QuerySet | None = None) -> Customer | None:
    """customer_for_stripe_object's lookup for callers that hold the keys rather than the object."""
    customers = Customer.objects.all() if queryset is None else queryset
    if subscription_id:
        customer = customers.filter(subscription_id=subscription_id).first()
        if customer is not None:
            return customer
    if stripe_customer_id:
        customer = customers.filter(stripe_customer_id=stripe_customer_id).first()
        if customer is not None:
            return customer
    if checkout_token:
        owner = CheckoutAttempt.objects.filter(token=checkout_token).values_list("customer_id", flat=True).first()
        if owner is not None:
            customer = customers.filter(pk=owner).first()
            if customer is not None:
                return customer
    if email:
        return customers.filter(email__iexact=email.strip()).first()
    return None


@dataclass(frozen=True)
class Entitlement:
    entitled: bool
    reason: str
    plan: str
    access_state: str
    current_period_end: datetime | None
    offline_grace_days: int
    grace_ends_at: datetime | None

    @property
    def locked(self) -> str:
        """"", "soft" or "hard": what a page or app should say about a dunning lock."""
        return {Reason.PAST_DUE_SOFT_LOCK: "soft", Reason.HARD_LOCKED: "hard"}.get(self.reason, "")


def plan_settings(plan: str) -> dict:
    return settings.PLANS.get(plan) or {"name": plan or "-", "price_id": "", "max_devices": 0,
                                        "offline_grace_days": 0, "managed_deployment": False, "deployments": 0}


def plan_for_price(price_id: str) -> str:
    for code, plan in settings.PLANS.items():
        if price_id and plan["price_id"] == price_id:
            return code
    return ""


def customer_entitlement(customer: Customer, *, now: datetime | None = None) -> Entitlement:
    """Pure function of the customer row (no query): subscription status, period end, dunning lock, grace."""
    now = now or timezone.now()
    grace_days = int(plan_settings(customer.plan).get("offline_grace_days", 0))
    period_end = customer.current_period_end
    grace_ends_at = period_end + timedelta(days=grace_days) if period_end else None
    status = customer.subscription_status
    state = customer.access_state

    def result(entitled: bool, reason: str) -> Entitlement:
        return Entitlement(entitled, reason, customer.plan, state, period_end, grace_days, grace_ends_at)

    if not customer.subscription_id or not status:
        return result(False, Reason.NO_SUBSCRIPTION)
    if state == Customer.AccessState.HARD_LOCKED:
        return result(False, Reason.HARD_LOCKED)
    if state == Customer.AccessState.CANCELED or status in ENDED:
        return result(False, Reason.CANCELED)
    if status == SubscriptionStatus.INCOMPLETE:
        return result(False, Reason.INCOMPLETE)
    if status == SubscriptionStatus.UNPAID:
        return result(False, Reason.UNPAID)
    if customer.dispute_open and settings.DISPUTE_LOCKS_ACCESS:
        return result(False, Reason.DISPUTED)
    if status == SubscriptionStatus.PAUSED or customer.collection_paused:
        return result(bool(settings.PAUSED_SUBSCRIPTION_ENTITLED), Reason.PAUSED)
    if grace_ends_at and now > grace_ends_at:
        return result(False, Reason.EXPIRED)
    if state == Customer.AccessState.SOFT_LOCKED:
        return result(True, Reason.PAST_DUE_SOFT_LOCK)
    if status in PAST_DUE:
        return result(True, Reason.PAST_DUE)
    if status in ENTITLED:
        return result(True, Reason.VALID)
    return result(False, Reason.EXPIRED)
