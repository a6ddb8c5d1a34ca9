"""The customer's discount (coupon), as Stripe says it is, whatever order its events arrive in.

Two paths keep `Customer.discount` (shape: objects.discount_summary):
- `customer.discount.created|updated|deleted`, which Stripe sends for a customer's coupon and for a
  subscription's own discounts;
- `customer.subscription.*`, whose `discounts` name the subscription's discounts by id.

The pinned API expands a discount's coupon nowhere, events included, so what the coupon takes off is read
before the event's transaction by a preparer (the coupon, or the subscription with
`expand[]=discounts.source.coupon`), and only while the console does not hold it yet.

Order: a change is stamped with its event's `created` (`Customer.discount_state_at`) and an older one is
ignored. Discount ids are never reused, so a deleted one is remembered (`Customer.discounts_deleted`) and
no late event or subscription snapshot brings it back, whatever its time. At the same second (one API
request emits several events): a discount event wins over a subscription snapshot naming another discount,
the later `start` wins, then `updated` over `created`. A discount event for a customer the console does not
know yet is skipped, never failed: the subscription event that makes the customer brings the discount.
"""
from __future__ import annotations

import logging
from datetime import datetime

from django.db import transaction

from billing_console.models import AuditEvent, Customer
from billing_console.selectors import customer_for_stripe_object
from billing_console.services import audit_log
from billing_console.stripe import gateway as stripe_gateway
from billing_console.stripe import objects as so
from billing_console.stripe.dispatch import prepared

log = logging.getLogger("billing_console.stripe")

STRIPE = AuditEvent.ActorType.STRIPE
DELETED_KEPT = 20  # deleted discount ids remembered per customer (a late event arrives within days)
EXPAND = ["discounts.source.coupon"]
# What an event's own kind says at the same second as the kept state (see _is_newer).
SNAPSHOT, CREATED, UPDATED = "subscription", "created", "updated"


def _read(what: str, fn) -> dict | None:
    """A Stripe read for a preparer: None when Stripe refuses for good (deleted, no access); the event is
    failed and retried only when Stripe is unreachable."""
    try:
        return dict(fn())
    except stripe_gateway.StripeGatewayError as exc:
        if exc.retryable:
            raise
        log.warning("discount details: %s not readable (%s)", what, exc.code)
        return None


def _ours(customer: Customer, summary: dict) -> bool:
    """False for a discount of another subscription than the customer's current one."""
    sub_id = summary.get("subscription") or ""
    return not (sub_id and customer.subscription_id and sub_id != customer.subscription_id)


# --- Preparers (outside the event's transaction) ----------------------------------------------------
def discount_coupon_prepare(event: dict) -> dict:
    """customer.discount.created|updated: the coupon, when the event names it by id and the console does not
    hold its details yet."""
    obj = so.event_object(event)
    if event.get("type") == "customer.discount.deleted" or not isinstance(obj, dict):
        return {}
    coupon_id = so.discount_coupon(obj)
    if not isinstance(coupon_id, str):
        return {}
    customer = customer_for_stripe_object(obj)
    if customer is None or not _ours(customer, so.discount_summary(obj)):
        return {}
    if customer.discount.get("coupon") == coupon_id and so.discount_has_coupon_details(customer.discount):
        return {}
    coupon = _read(f"coupon {coupon_id}", lambda: stripe_gateway.coupon_retrieve(coupon_id))
    return {"coupon": coupon} if coupon else {}


def subscription_discounts_prepare(event: dict) -> dict:
    """customer.subscription.*: the subscription's discounts with their coupons, when it names them by id only
    and the console does not hold the first one's details yet."""
    sub = so.event_object(event)
    if not isinstance(sub, dict) or not isinstance(sub.get("id"), str) or not sub["id"]:
        return {}
    named = [d for d in so.subscription_discounts(sub) if isinstance(d, str)]
    if not named:
        return {}
    customer = customer_for_stripe_object(sub)
    if customer is not None:
        live = [d for d in so.subscription_discounts(sub) if so.obj_id(d) not in customer.discounts_deleted]
        first = so.obj_id(live[0]) if live else ""
        if not first or not isinstance(live[0], str) or (
                customer.discount.get("discount") == first and so.discount_has_coupon_details(customer.discount)):
            return {}
    read = _read(f"subscription {sub['id']}", lambda: stripe_gateway.subscription_retrieve(sub["id"], expand=EXPAND))
    found = [d for d in (read or {}).get("discounts") or [] if isinstance(d, dict) and so.obj_id(d)]
    return {"discounts": {so.obj_id(d): dict(d) for d in found}} if found else {}


def subscription_with_prepared_discounts(sub: dict, event: dict) -> dict:
    """The subscription of the event with the discounts its preparer read in place of their ids."""
    read = (prepared(event) or {}).get("discounts") or {}
    if not read or not isinstance(sub.get("discounts"), list):
        return sub
    return {**sub, "discounts": [read.get(d, d) if isinstance(d, str) else d for d in sub["discounts"]]}


# --- Deciding -----------------------------------------------------------------------------------------
def _is_newer(customer: Customer, summary: dict, at: datetime | None, kind: str) -> bool:
    """May `summary` (the state as of `at`, None: just read from Stripe) replace the kept discount?"""
    watermark = customer.discount_state_at
    if at is None or watermark is None or at > watermark:
        return True
    if at < watermark:
        return False
    kept = customer.discount
    if not kept or kept.get("discount", "") == summary.get("discount", ""):
        return True
    if kind == SNAPSHOT:
        return False
    start, kept_start = summary.get("start") or 0, kept.get("start") or 0
    if start != kept_start:
        return start > kept_start
    return kind == UPDATED


def _keep_details(kept: dict, summary: dict) -> dict:
    """The same discount named without its coupon's details keeps the details already known."""
    if (summary.get("discount") and kept.get("discount") == summary["discount"]
            and so.discount_has_coupon_details(kept) and not so.discount_has_coupon_details(summary)):
        return {**kept, **{k: v for k, v in summary.items() if v not in (None, "")}}
    return summary


def _save(customer: Customer, summary: dict, at: datetime | None, *, actor: str, deleted: str = "") -> Customer:
    """Store (on the locked row) the discount and move the watermark forward; audit a change."""
    before = customer.discount
    fields = []
    if before != summary:
        customer.discount = summary
        fields.append("discount")
    if at is not None and (customer.discount_state_at is None or at > customer.discount_state_at):
        customer.discount_state_at = at
        fields.append("discount_state_at")
    if deleted and deleted not in customer.discounts_deleted:
        customer.discounts_deleted = [*customer.discounts_deleted, deleted][-DELETED_KEPT:]
        fields.append("discounts_deleted")
    if fields:
        customer.save(update_fields=[*fields, "updated_at"])
    if before != summary:
        audit_log(actor_type=STRIPE, actor=actor, action="customer.discount_changed", target=customer,
                  data={"from": before, "to": summary})
    return customer


def subscription_discount_wanted(customer: Customer, subscription: dict, state_at: datetime | None) -> dict | None:
    """The discount a subscription state gives the (locked) customer, or None to leave the kept one: its
    first discount not deleted; none keeps the customer's own discount (not a subscription's)."""
    live = [d for d in so.subscription_discounts(subscription) if so.obj_id(d) not in customer.discounts_deleted]
    kept = customer.discount
    if live:
        first = live[0]
        summary = so.discount_summary(first) if isinstance(first, dict) else {
            "discount": first[:255], "subscription": "", "coupon": "", "start": None, "end": None}
        summary["subscription"] = summary.get("subscription") or so.obj_id(subscription.get("id"))
        summary = _keep_details(kept, summary)
    elif kept and not kept.get("subscription"):
        summary = kept
    else:
        summary = {}
    return summary if _is_newer(customer, summary, state_at, SNAPSHOT) else None


def subscription_discount_stamp(customer: Customer, state_at: datetime | None) -> None:
    """The watermark after customer_apply_subscription stored a subscription's discount (row locked)."""
    if state_at is not None and (customer.discount_state_at is None or state_at > customer.discount_state_at):
        customer.discount_state_at = state_at


# --- Receiving customer.discount.* ------------------------------------------------------------------
def customer_discount_receive(*, event: dict) -> Customer | None:
    """customer.discount.*: keep the customer's discount (with its coupon's details) for the manage page and
    support; a deleted one is cleared and never comes back. Unknown customer or no discount named: skipped."""
    obj = so.event_object(event)
    summary = so.discount_summary(obj)
    if not summary:
        log.info("discount event %s names no discount: ignored", event.get("id"))
        return None
    customer = customer_for_stripe_object(obj)
    if customer is None:
        log.info("discount event %s: no console customer yet (the subscription event brings it)", event.get("id"))
        return None
    at, actor = so.event_created(event), str(event.get("id") or "")[:255]
    kind = str(event.get("type") or "").rsplit(".", 1)[-1]
    coupon = (prepared(event) or {}).get("coupon")
    if kind != "deleted" and isinstance(coupon, dict) and so.obj_id(coupon) == summary["coupon"]:
        summary.update(so.coupon_summary(coupon))
    with transaction.atomic(savepoint=False):
        customer = Customer.objects.select_for_update().get(pk=customer.pk)
        if kind == "deleted":
            return customer_discount_forget(customer=customer, summary=summary, at=at, actor=actor)
        if summary["discount"] and summary["discount"] in customer.discounts_deleted:
            log.info("discount %s was deleted: event %s ignored", summary["discount"], event.get("id"))
            return customer
        kept = customer.discount
        if not _ours(customer, summary):
            log.info("discount event %s is for another subscription than the customer's", event.get("id"))
            return customer
        own_of_subscription = bool(customer.subscription_id) and kept.get("subscription") == customer.subscription_id
        if not summary["subscription"] and own_of_subscription:
            # On the subscription's invoices its own discount goes before the customer's.
            return customer
        if not _is_newer(customer, summary, at, UPDATED if kind == UPDATED else CREATED):
            log.info("discount event %s is older than the discount kept: ignored", event.get("id"))
            return customer
        return _save(customer, _keep_details(kept, summary), at, actor=actor)


def customer_discount_forget(*, customer: Customer, summary: dict, at: datetime | None, actor: str) -> Customer:
    """A deleted discount (row locked): cleared when it is the one kept, whatever the event's time (a
    discount id is never reused), and remembered so no late event brings it back."""
    kept, gone = customer.discount, summary.get("discount") or ""
    if gone and kept.get("discount"):
        same = kept["discount"] == gone
    else:
        same = bool(kept) and kept.get("coupon") == summary.get("coupon") and (
            kept.get("subscription") or "") == (summary.get("subscription") or "")
    return _save(customer, {} if same else kept, at, actor=actor, deleted=gone)
