"""Subscriptions: creation from checkout, renewal and cancellation by the clock, the API."""
from __future__ import annotations

import copy

from .. import shapes
from ..errors import StripeError, allow, metadata as merge_metadata, missing
from ..params import as_bool, as_int, as_list
from ..store import created_filter
from . import invoices, payment_methods

CYCLES = "subscription.cycles"  # store table: subscription id -> billing periods started


def create_subscription(emu, customer: dict, items: list[dict], pm_id: str, metadata=None) -> dict:
    sub_id = shapes.new_id("sub_")
    now = emu.now()
    first_price = items[0]["price"]
    period_end = shapes.add_interval(now, first_price["recurring"]["interval"],
                                     first_price["recurring"]["interval_count"])
    sub_items = [shapes.subscription_item(item_id=shapes.new_id("si_", 14), subscription_id=sub_id,
                                          price_obj=emu.store.objects[item["price"]["id"]],
                                          quantity=item["quantity"], created=now,
                                          period_start=now, period_end=period_end)
                 for item in items]
    sub = shapes.subscription(subscription_id=sub_id, customer_id=customer["id"], items=sub_items,
                              created=now, period_start=now, period_end=period_end,
                              currency=first_price["currency"], metadata=copy.deepcopy(metadata or {}),
                              default_payment_method=pm_id)
    emu.store.table(CYCLES)[sub_id] = 1
    return emu.store.put(sub)


def renew_subscription(emu, sub_id: str):
    sub = emu.store.objects[sub_id]
    if sub["cancel_at_period_end"] or (sub["cancel_at"] and sub["cancel_at"] <= sub["current_period_end"]):
        cancel_subscription(emu, sub, reason="cancellation_requested")
        return
    previous = {k: sub[k] for k in ("current_period_start", "current_period_end", "latest_invoice")}
    price = sub["items"]["data"][0]["price"]
    emu.store.table(CYCLES)[sub_id] += 1
    start = sub["current_period_end"]
    end = shapes.add_interval(sub["billing_cycle_anchor"], price["recurring"]["interval"],
                              price["recurring"]["interval_count"] * emu.store.table(CYCLES)[sub_id])
    sub.update(current_period_start=start, current_period_end=end)
    for item in sub["items"]["data"]:
        item.update(current_period_start=start, current_period_end=end)
    invoice = invoices.create_invoice(emu, sub, "subscription_cycle", start, end)
    sub["latest_invoice"] = invoice["id"]
    emu.emit("invoice.created", invoice)
    invoices.finalize_invoice(emu, invoice)
    customer = emu.store.objects[sub["customer"]]
    ok, _ = payment_methods.charge_ok(emu, customer, sub["default_payment_method"])
    if ok:
        invoices.mark_invoice_paid(emu, invoice)
        if sub["status"] == "past_due":
            previous["status"] = "past_due"
            sub["status"] = "active"
    else:
        invoices.record_failure(emu, invoice)
        if sub["status"] != "past_due":
            previous["status"] = sub["status"]
            sub["status"] = "past_due"
    emu.emit("customer.subscription.updated", sub, previous)
    if not ok and invoice["next_payment_attempt"] is None:
        invoices.exhaust_retries(emu, invoice)


def cancel_scheduled(emu, sub_id: str):
    cancel_subscription(emu, emu.store.objects[sub_id], reason="cancellation_requested")


def cancel_subscription(emu, sub: dict, *, reason: str, comment=None, feedback=None):
    now = emu.now()
    sub.update(status="canceled", ended_at=now, canceled_at=sub["canceled_at"] or now,
               cancel_at_period_end=False)
    sub["cancellation_details"].update(reason=reason)
    if comment is not None:
        sub["cancellation_details"]["comment"] = comment
    if feedback is not None:
        sub["cancellation_details"]["feedback"] = feedback
    emu.emit("customer.subscription.deleted", sub)


def schedule_cancel(emu, sub: dict, at_period_end: bool) -> dict:
    """Set or clear cancel_at_period_end; returns previous attributes for the event."""
    previous = {k: sub[k] for k in ("cancel_at_period_end", "cancel_at", "canceled_at")}
    previous["cancellation_details"] = copy.deepcopy(sub["cancellation_details"])
    if at_period_end:
        sub.update(cancel_at_period_end=True, cancel_at=sub["current_period_end"], canceled_at=emu.now())
        sub["cancellation_details"]["reason"] = "cancellation_requested"
    else:
        sub.update(cancel_at_period_end=False, cancel_at=None, canceled_at=None)
        sub["cancellation_details"]["reason"] = None
    return {k: v for k, v in previous.items() if sub[k] != v}


def subscription_list(emu, params):
    items = emu.store.newest_first("subscription")
    status = params.pop("status", None)
    if status is None:
        items = [s for s in items if s["status"] not in ("canceled", "incomplete_expired")]
    elif status == "ended":
        items = [s for s in items if s["status"] in ("canceled", "incomplete_expired")]
    elif status != "all":
        items = [s for s in items if s["status"] == status]
    for key in ("customer", "price"):
        if key in params:
            value = params.pop(key)
            items = [s for s in items if (s[key] == value if key == "customer"
                                          else any(i["price"]["id"] == value for i in s["items"]["data"]))]
    return emu.store.page(created_filter(items, params.get("created")), params, "/v1/subscriptions")


def subscription_search(emu, params):
    return emu.store.search("subscription", params, {"status", "customer", "created"}, "/v1/subscriptions/search")


def subscription_retrieve(emu, params, id):
    return emu.store.get("subscription", id)


def subscription_update(emu, params, id):
    allow(params, {"cancel_at_period_end", "cancel_at", "metadata", "default_payment_method",
                   "description", "proration_behavior", "cancellation_details", "items",
                   "payment_behavior"})
    sub = emu.store.get("subscription", id)
    if sub["status"] == "canceled" and set(params) - {"metadata", "cancellation_details"}:
        raise StripeError(400, "A canceled subscription can only update its cancellation_details and metadata.")
    previous = {}
    if "metadata" in params:
        metadata = merge_metadata(sub["metadata"], params["metadata"])
        if metadata != sub["metadata"]:
            previous["metadata"] = sub["metadata"]
            sub["metadata"] = metadata
    if "description" in params and sub["description"] != (params["description"] or None):
        previous["description"] = sub["description"]
        sub["description"] = params["description"] or None
    if "default_payment_method" in params:
        pm_id = params["default_payment_method"] or None
        if pm_id:
            pm = emu.store.get("payment_method", pm_id, "default_payment_method")
            if pm["customer"] != sub["customer"]:
                raise StripeError(400, "The payment method must be attached to the customer.",
                                  param="default_payment_method")
        if pm_id != sub["default_payment_method"]:
            previous["default_payment_method"] = sub["default_payment_method"]
            sub["default_payment_method"] = pm_id
    details = params.get("cancellation_details")
    if isinstance(details, dict):
        old = copy.deepcopy(sub["cancellation_details"])
        for key in ("comment", "feedback"):
            if key in details:
                sub["cancellation_details"][key] = details[key] or None
        if old != sub["cancellation_details"]:
            previous.setdefault("cancellation_details", old)
    if "cancel_at_period_end" in params:
        wanted = as_bool(params["cancel_at_period_end"], "cancel_at_period_end")
        if wanted != sub["cancel_at_period_end"]:
            previous.update({k: v for k, v in schedule_cancel(emu, sub, wanted).items() if k not in previous})
    if "cancel_at" in params:
        old = {k: sub[k] for k in ("cancel_at", "canceled_at", "cancel_at_period_end")}
        if params["cancel_at"] == "":
            sub.update(cancel_at=None, canceled_at=None, cancel_at_period_end=False)
        else:
            at = as_int(params["cancel_at"], "cancel_at")
            if at <= emu.now():
                raise StripeError(400, "cancel_at must be in the future.", param="cancel_at")
            sub.update(cancel_at=at, canceled_at=emu.now(),
                       cancel_at_period_end=at == sub["current_period_end"])
        previous.update({k: v for k, v in old.items() if sub[k] != v and k not in previous})
    if "items" in params:
        update_items(emu, sub, as_list(params["items"]), previous)
    if previous:
        emu.emit("customer.subscription.updated", sub, previous)
    return sub


def update_items(emu, sub: dict, items: list, previous: dict):
    """Swap an item's price or quantity (no proration: the new price applies from the next period)."""
    old_items = copy.deepcopy(sub["items"])
    for index, change in enumerate(items):
        if not isinstance(change, dict) or not change.get("id"):
            raise StripeError(400, "The sandbox can only change existing items: give items[n][id].",
                              param=f"items[{index}][id]")
        item = next((i for i in sub["items"]["data"] if i["id"] == change["id"]), None)
        if item is None:
            raise missing("subscription_item", change["id"], f"items[{index}][id]")
        if change.get("price"):
            price = emu.store.get("price", change["price"], f"items[{index}][price]")
            if price["type"] != "recurring" or price["currency"] != sub["currency"]:
                raise StripeError(400, "The price must be recurring and in the subscription's currency.",
                                  param=f"items[{index}][price]")
            item.update(price=copy.deepcopy(price), plan=shapes.plan_from_price(price))
        if change.get("quantity"):
            item["quantity"] = as_int(change["quantity"], f"items[{index}][quantity]")
    if old_items != sub["items"]:
        previous["items"] = old_items


def subscription_cancel(emu, params, id):
    sub = emu.store.get("subscription", id)
    if sub["status"] == "canceled":
        raise StripeError(400, f"No such subscription: '{id}'. This subscription has already been canceled.",
                          code="resource_missing", param="id")
    details = params.get("cancellation_details") if isinstance(params.get("cancellation_details"), dict) else {}
    cancel_subscription(emu, sub, reason="cancellation_requested", comment=details.get("comment"),
                        feedback=details.get("feedback"))
    return sub


def register(api):
    api.add("GET", "/v1/subscriptions", subscription_list)
    api.add("GET", "/v1/subscriptions/search", subscription_search)
    api.add("GET", "/v1/subscriptions/{id}", subscription_retrieve)
    api.add("POST", "/v1/subscriptions/{id}", subscription_update)
    api.add("DELETE", "/v1/subscriptions/{id}", subscription_cancel)
    api.on_clock(due)


def due(emu, until):
    found = []
    for sub in emu.store.all("subscription"):
        if sub["status"] in ("active", "past_due", "trialing"):
            if sub["cancel_at"] and sub["cancel_at"] < sub["current_period_end"] and sub["cancel_at"] <= until:
                found.append((sub["cancel_at"], 2, sub["id"], cancel_scheduled))
            elif sub["current_period_end"] <= until:
                found.append((sub["current_period_end"], 2, sub["id"], renew_subscription))
    return found
