"""Reads shared by views, admin and APIs. The entitlement selector is the one answer to
"may this customer use the product now, why, and until when" -- licences, deployments and pages ask it.
"""
from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta

from django.conf import settings
from django.utils import timezone

from billing_console.models import Customer


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


ENTITLED_STATUSES = {"active", "trialing"}
PAST_DUE_STATUSES = {"past_due"}
ENDED_STATUSES = {"canceled", "incomplete_expired"}


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
                                        "offline_grace_days": 0, "managed_deployment": False}


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
    A = Customer.AccessState

    def result(entitled: bool, reason: str) -> Entitlement:
        return Entitlement(entitled, reason, customer.plan, state, period_end, grace_days, grace_ends_at)

    if not customer.subscription_id or not status:
        return result(False, Reason.NO_SUBSCRIPTION)
    if state == A.HARD_LOCKED:
        return result(False, Reason.HARD_LOCKED)
    if state == A.CANCELED or status in ENDED_STATUSES:
        return result(False, Reason.CANCELED)
    if status == "incomplete":
        return result(False, Reason.INCOMPLETE)
    if status == "unpaid":
        return result(False, Reason.UNPAID)
    if customer.dispute_open and settings.DISPUTE_LOCKS_ACCESS:
        return result(False, Reason.DISPUTED)
    if status == "paused" or customer.collection_paused:
        return result(bool(settings.PAUSED_SUBSCRIPTION_ENTITLED), Reason.PAUSED)
    if grace_ends_at and now > grace_ends_at:
        return result(False, Reason.EXPIRED)
    if state == A.SOFT_LOCKED:
        return result(True, Reason.PAST_DUE_SOFT_LOCK)
    if status in PAST_DUE_STATUSES:
        return result(True, Reason.PAST_DUE)
    if status in ENTITLED_STATUSES:
        return result(True, Reason.VALID)
    return result(False, Reason.EXPIRED)
