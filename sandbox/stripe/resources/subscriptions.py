"""Subscriptions: creation (API and Checkout), trials, renewal, prorations, pauses, every status, the API.

Statuses follow Stripe: `incomplete` when the first payment fails (or is left to the customer with
`payment_behavior=default_incomplete`), `incomplete_expired` 23 hours later if still unpaid, `trialing`
until `trial_end` (then an invoice, or `paused` / `canceled` when there is no payment method and
`trial_settings.end_behavior.missing_payment_method` says so), `active`, `past_due` on a failed renewal,
then `unpaid` or `canceled` when the retries run out (the emulator's `retries_exhausted` setting).
Time is the customer's test clock when it has one (see test_clocks.py).
"""
from __future__ import annotations

import copy
import time

from .. import shapes
from ..errors import StripeError, allow, metadata as merge_metadata, missing, required
from ..params import as_bool, as_int, as_list
from ..store import created_filter
from . import invoices, payment_methods, tax_rates, test_clocks

DAY = 86400
CYCLES = "subscription.cycles"  # store table: subscription id -> billing periods started after the anchor
TRIAL_WILL_END = "subscription.trial_will_end"  # subscription id -> trial_end already announced
INCOMPLETE_HOURS = 23
TRIAL_NOTICE_SECONDS = 3 * DAY
PRORATION_BEHAVIORS = ("create_prorations", "none", "always_invoice")
PAYMENT_BEHAVIORS = ("allow_incomplete", "default_incomplete", "error_if_incomplete", "pending_if_incomplete")
PAUSE_BEHAVIORS = ("keep_as_draft", "mark_uncollectible", "void")
RETRIES_EXHAUSTED = ("cancel", "unpaid", "past_due")


# -- building -----------------------------------------------------------------------------------
def _items(emu, sub_id: str, items: list[dict], now: int, period_end: int) -> list[dict]:
    return [shapes.subscription_item(item_id=shapes.new_id("si_", 14), subscription_id=sub_id,
                                     price_obj=emu.store.objects[item["price"]["id"]],
                                     quantity=item["quantity"], created=now,
                                     period_start=now, period_end=period_end)
            for item in items]


def create_subscription(emu, customer: dict, items: list[dict], pm_id: str | None, metadata=None, *,
                        trial_end: int | None = None) -> dict:
    """A subscription starting now on `items` ([{"price": price, "quantity": n}]); trialing until
    `trial_end` when given, else active (the caller settles the first invoice)."""
    sub_id = shapes.new_id("sub_")
    now = emu.now()
    first_price = items[0]["price"]
    recurring = first_price["recurring"]
    period_end = trial_end or shapes.add_interval(now, recurring["interval"], recurring["interval_count"])
    sub = shapes.subscription(subscription_id=sub_id, customer_id=customer["id"],
                              items=_items(emu, sub_id, items, now, period_end),
                              created=now, period_start=now, period_end=period_end,
                              currency=first_price["currency"], metadata=copy.deepcopy(metadata or {}),
                              default_payment_method=pm_id)
    sub["test_clock"] = customer.get("test_clock")
    if trial_end:
        sub.update(status="trialing", trial_start=now, trial_end=trial_end, billing_cycle_anchor=trial_end)
        emu.store.table(CYCLES)[sub_id] = 0
    else:
        emu.store.table(CYCLES)[sub_id] = 1
    return emu.store.put(sub)


def _set_status(sub: dict, status: str, previous: dict):
    if sub["status"] != status:
        previous.setdefault("status", sub["status"])
        sub["status"] = status


def _customer_has_payment_method(emu, sub: dict) -> bool:
    customer = emu.store.objects[sub["customer"]]
    return bool(sub["default_payment_method"] or customer["invoice_settings"]["default_payment_method"]
                or customer.get("default_source")
                or any(pm["customer"] == customer["id"] for pm in emu.store.all("payment_method")))


# -- invoices the subscription makes --------------------------------------------------------------
def _invoice_for_period(emu, sub: dict, reason: str, start: int, end: int) -> dict:
    invoice = invoices.create_invoice(emu, sub, reason, start, end)
    if sub["status"] == "trialing" and sub["trial_end"] and sub["trial_end"] > start:
        _trial_lines(emu, invoice)
    sub["latest_invoice"] = invoice["id"]
    return invoice


def _trial_lines(emu, invoice: dict):
    """A trial's invoice: Stripe bills each item at zero, "Trial period for <product>"."""
    for line in invoice["lines"]["data"]:
        if (line.get("parent") or {}).get("type") != "subscription_item_details":
            continue
        price_id = (line.get("pricing") or {}).get("price_details", {}).get("price")
        product = emu.store.objects.get((emu.store.objects.get(price_id) or {}).get("product", ""), {})
        line.update(amount=0, subtotal=0, description=f"Trial period for {product.get('name', 'Subscription')}")
        line["discount_amounts"] = []
        line["taxes"] = []
    invoices.recompute(emu, invoice)


def _void(emu, invoice: dict):
    invoices.void_invoice(emu, invoice)


def _mark_uncollectible(emu, invoice: dict):
    invoices.mark_uncollectible(emu, invoice)


def _collect(emu, sub: dict, invoice: dict) -> bool | None:
    """Finalize and charge a subscription invoice as Stripe does; True paid, False failed, None not
    attempted (paused collection, send_invoice, default_incomplete)."""
    pause = sub["pause_collection"]
    if pause and pause["behavior"] == "keep_as_draft":
        invoice["auto_advance"] = False
        return None
    invoices.finalize_invoice(emu, invoice)
    if invoice["amount_due"] == 0:
        if invoice["status"] == "open":
            invoices.mark_invoice_paid(emu, invoice)
        return True
    if pause:
        (_void if pause["behavior"] == "void" else _mark_uncollectible)(emu, invoice)
        return None
    if sub["collection_method"] == "send_invoice" or sub["status"] == "unpaid":
        return None  # unpaid: invoices go on being made, payments are not attempted
    ok, _ = invoices.attempt_invoice(emu, invoice)
    if not ok:
        invoices.record_failure(emu, invoice)
    return ok


# -- clock work ---------------------------------------------------------------------------------
def renew_subscription(emu, sub_id: str):
    """Period end (or trial end): a new period and its invoice, charged; trialing/past_due settle."""
    sub = emu.store.objects[sub_id]
    if sub["cancel_at_period_end"] or (sub["cancel_at"] and sub["cancel_at"] <= sub["current_period_end"]):
        cancel_subscription(emu, sub, reason="cancellation_requested")
        return
    previous = {k: sub[k] for k in ("current_period_start", "current_period_end", "latest_invoice")}
    if sub["status"] == "trialing" and not _customer_has_payment_method(emu, sub):
        behaviour = sub["trial_settings"]["end_behavior"]["missing_payment_method"]
        if behaviour == "cancel":
            cancel_subscription(emu, sub, reason="cancellation_requested")
            return
        if behaviour == "pause":
            _set_status(sub, "paused", previous)
            emu.emit("customer.subscription.updated", sub, {"status": "trialing"})
            emu.emit("customer.subscription.paused", sub)
            return
    price = sub["items"]["data"][0]["price"]
    emu.store.table(CYCLES)[sub_id] += 1
    start = sub["current_period_end"]
    end = shapes.add_interval(sub["billing_cycle_anchor"], price["recurring"]["interval"],
                              price["recurring"]["interval_count"] * emu.store.table(CYCLES)[sub_id])
    sub.update(current_period_start=start, current_period_end=end)
    for item in sub["items"]["data"]:
        item.update(current_period_start=start, current_period_end=end)
    invoice = _invoice_for_period(emu, sub, "subscription_cycle", start, end)
    emu.emit("invoice.created", invoice)
    was = sub["status"]
    ok = _collect(emu, sub, invoice)
    if was == "trialing" or sub["status"] == "trialing":
        _set_status(sub, "active", previous)
        previous["status"] = "trialing"
    if ok is False:
        _set_status(sub, "past_due", previous)
    elif ok and sub["status"] == "past_due":
        _set_status(sub, "active", previous)
    previous = {k: v for k, v in previous.items() if sub.get(k) != v}
    emu.emit("customer.subscription.updated", sub, previous)
    if ok is False and invoice["next_payment_attempt"] is None:
        invoices.exhaust_retries(emu, invoice)


def announce_trial_end(emu, sub_id: str):
    sub = emu.store.objects[sub_id]
    emu.store.table(TRIAL_WILL_END)[sub_id] = sub["trial_end"]
    emu.emit("customer.subscription.trial_will_end", sub)


def expire_incomplete(emu, sub_id: str):
    """23 hours without paying the first invoice: the invoice is voided, the subscription is over."""
    sub = emu.store.objects[sub_id]
    invoice = emu.store.objects.get(sub["latest_invoice"] or "")
    if invoice and invoice["status"] == "open":
        _void(emu, invoice)
    sub.update(status="incomplete_expired", ended_at=emu.now())
    emu.emit("customer.subscription.deleted", sub)


def resume_collection(emu, sub_id: str):
    sub = emu.store.objects[sub_id]
    previous = {"pause_collection": copy.deepcopy(sub["pause_collection"])}
    sub["pause_collection"] = None
    emu.emit("customer.subscription.updated", sub, previous)


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
    if sub.get("schedule"):
        from . import subscription_schedules  # noqa: PLC0415  (schedules import this module)
        subscription_schedules.subscription_ended(emu, sub)


def retries_exhausted(emu, sub: dict):
    """Every retry of a renewal failed: what the account's setting says (cancel, unpaid or past_due)."""
    setting = getattr(emu, "retries_exhausted", "cancel")
    if sub["status"] in ("canceled", "incomplete_expired"):
        return
    if setting == "cancel":
        cancel_subscription(emu, sub, reason="payment_failed")
    elif setting == "unpaid" and sub["status"] != "unpaid":
        previous = {"status": sub["status"]}
        sub["status"] = "unpaid"
        emu.emit("customer.subscription.updated", sub, previous)


def invoice_paid(emu, invoice: dict):
    """An invoice of the subscription was paid: incomplete, past_due and unpaid come back to active."""
    sub = emu.store.objects.get(invoice.get("subscription") or "")
    if not sub or sub["latest_invoice"] != invoice["id"]:
        return
    if sub["status"] in ("past_due", "incomplete", "unpaid"):
        previous = {"status": sub["status"]}
        sub["status"] = "active"
        emu.emit("customer.subscription.updated", sub, previous)


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


# -- prorations ---------------------------------------------------------------------------------
def _round_div(numerator: int, denominator: int) -> int:
    """numerator / denominator rounded half away from zero, in integers (no floats for money)."""
    sign = -1 if (numerator < 0) != (denominator < 0) else 1
    n, d = abs(numerator), abs(denominator)
    return sign * ((2 * n + d) // (2 * d))


def _product_name(emu, price: dict) -> str:
    return emu.store.objects.get(price["product"], {}).get("name", "Subscription")


def _proration_lines(emu, sub: dict, old_item: dict | None, new_item: dict | None, at: int) -> list[dict]:
    """Stripe's time-based prorations: per second of the period left, a credit for the old item and a
    charge for the new one. Each is {"amount", "description", "price", "quantity"}."""
    start, end = sub["current_period_start"], sub["current_period_end"]
    left, length = end - at, end - start
    if left <= 0 or length <= 0:
        return []
    day = time.strftime("%d %b %Y", time.gmtime(at))
    lines = []
    for item, sign, words in ((old_item, -1, "Unused time on"), (new_item, 1, "Remaining time on")):
        if item is None:
            continue
        price, quantity = item["price"], item["quantity"]
        amount = sign * _round_div(price["unit_amount"] * quantity * left, length)
        label = _product_name(emu, price) if quantity == 1 else f"{quantity} × {_product_name(emu, price)}"
        lines.append({"amount": amount, "description": f"{words} {label} after {day}", "price": price,
                      "quantity": quantity, "subscription_item": item["id"]})
    return lines


def _pending_proration(emu, sub: dict, line: dict, at: int) -> dict:
    """A pending invoice item for one proration line (the customer's next invoice picks it up)."""
    try:
        from . import invoiceitems  # noqa: PLC0415
        create = invoiceitems.create_proration_item
    except (ImportError, AttributeError):
        create = _proration_item
    return create(emu, customer_id=sub["customer"], subscription_id=sub["id"], amount=line["amount"],
                  currency=sub["currency"], description=line["description"], price=line["price"],
                  quantity=line["quantity"], subscription_item=line["subscription_item"],
                  period_start=at, period_end=sub["current_period_end"])


def _proration_item(emu, *, customer_id, subscription_id, amount, currency, description, price, quantity,
                    subscription_item, period_start, period_end) -> dict:
    """The invoice item Stripe creates for a proration (used until the invoice items family offers one)."""
    item = shapes.example("invoiceitem")
    customer = emu.store.objects[customer_id]
    item.update(id=shapes.new_id("ii_"), amount=amount, currency=currency, customer=customer_id,
                date=emu.now(), description=description, discountable=False, discounts=[], invoice=None,
                livemode=False, metadata={}, period={"start": period_start, "end": period_end},
                proration=True, quantity=quantity, tax_rates=[], test_clock=customer.get("test_clock"),
                net_amount=amount, customer_account=None, quantity_decimal=str(quantity))
    item["parent"] = {"type": "subscription_details",
                      "subscription_details": {"subscription": subscription_id,
                                               "subscription_item": subscription_item}}
    item["pricing"] = {"type": "price_details", "unit_amount_decimal": str(_round_div(amount, quantity or 1)),
                       "price_details": {"price": price["id"], "product": price["product"]}}
    emu.store.put(item)
    emu.emit("invoiceitem.created", item)
    return item


def _settle(emu, sub: dict, invoice: dict):
    """Collect an invoice made by an update; a failed payment makes the subscription past_due."""
    ok = _collect(emu, sub, invoice)
    if ok is False and sub["status"] == "active":
        sub["status"] = "past_due"
        emu.emit("customer.subscription.updated", sub, {"status": "active"})
    if ok is False and invoice["next_payment_attempt"] is None:
        invoices.exhaust_retries(emu, invoice)


def _invoice_now(emu, sub: dict) -> dict | None:
    """`always_invoice`: an invoice of the subscription's pending items right away, finalized and charged."""
    customer = emu.store.objects[sub["customer"]]
    pending = invoices.pending_items(emu, customer["id"], sub["currency"], sub["id"])
    if not pending:
        return None
    invoice = invoices.build_invoice(emu, customer=customer, billing_reason="subscription_update",
                                     currency=sub["currency"], sub=sub)
    invoices.attach_items(emu, invoice, pending)
    invoice["collection_method"] = sub["collection_method"]
    invoice["discounts"] = invoices.subscription_discounts(emu, sub, emu.now())
    invoices.recompute(emu, invoice)
    emu.store.put(invoice)
    sub["latest_invoice"] = invoice["id"]
    emu.emit("invoice.created", invoice)
    _settle(emu, sub, invoice)
    return invoice


# -- the API: create ----------------------------------------------------------------------------
CREATE_FIELDS = {"customer", "items", "default_payment_method", "payment_behavior", "trial_period_days",
                 "trial_end", "trial_from_plan", "trial_settings", "coupon", "discounts", "promotion_code",
                 "cancel_at_period_end", "cancel_at", "proration_behavior", "metadata", "collection_method",
                 "days_until_due", "description", "default_tax_rates", "off_session", "payment_settings",
                 "currency"}
# Stripe parameters the sandbox knows but does not emulate: refused with a clear error, never dropped.
NOT_EMULATED = {"default_source", "automatic_tax", "add_invoice_items", "billing_cycle_anchor_config",
                "backdate_start_date", "pending_invoice_item_interval", "invoice_settings",
                "application_fee_percent", "on_behalf_of", "transfer_data", "billing_thresholds", "billing_mode"}
ITEM_FIELDS = {"price", "quantity", "metadata", "tax_rates", "id", "deleted", "plan"}
ITEM_NOT_EMULATED = {"discounts", "price_data", "billing_thresholds", "clear_usage"}


def _refuse_not_emulated(params: dict, names: set[str], where: str = ""):
    """`where` is the enclosing parameter (`items[0]`), if any."""
    for key in params:
        if key in names:
            name = f"{where}[{key}]" if where else key
            raise StripeError(400, f"The Stripe sandbox does not emulate `{name}` on subscriptions.", param=name)


def _parse_items(emu, raw_items, name="items", *, allow_ids=False) -> list[dict]:
    parsed = []
    for index, raw in enumerate(raw_items):
        param = f"{name}[{index}]"
        if not isinstance(raw, dict):
            raise StripeError(400, "Invalid array", param=name)
        _refuse_not_emulated(raw, ITEM_NOT_EMULATED, param)
        for key in raw:
            if key not in ITEM_FIELDS or (key in ("id", "deleted") and not allow_ids):
                raise StripeError(400, f"Received unknown parameter: {param}[{key}]", param=f"{param}[{key}]")
        entry = {"raw": raw, "id": raw.get("id")}
        price_id = raw.get("price") or raw.get("plan")
        if price_id:
            price = emu.store.get("price", price_id, f"{param}[price]")
            if price["type"] != "recurring":
                raise StripeError(400, f"The price specified is set to `type=one_time` but this field only "
                                       f"accepts prices with `type=recurring`.", param=f"{param}[price]")
            if not price["active"]:
                raise StripeError(400, "The price specified is inactive. This field only accepts active prices.",
                                  param=f"{param}[price]")
            entry["price"] = price
        elif not raw.get("id"):
            raise StripeError(400, f"Missing required param: {param}[price].", code="parameter_missing",
                              param=f"{param}[price]")
        if raw.get("quantity") not in (None, ""):
            quantity = as_int(raw["quantity"], f"{param}[quantity]")
            if quantity < 0:
                raise StripeError(400, "Invalid non-negative integer", param=f"{param}[quantity]")
            entry["quantity"] = quantity
        entry["metadata"] = merge_metadata({}, raw.get("metadata"))
        if "tax_rates" in raw:
            entry["tax_rates"] = tax_rates.rate_objects(emu, raw["tax_rates"], f"{param}[tax_rates]")
        parsed.append(entry)
    return parsed


def _check_prices(prices: list[dict], currency=None, param="items"):
    intervals = {(p["recurring"]["interval"], p["recurring"]["interval_count"]) for p in prices}
    currencies = {p["currency"] for p in prices} | ({currency} if currency else set())
    if len(intervals) > 1 or len(currencies) > 1:
        raise StripeError(400, "All prices on a subscription must have the same `recurring.interval` and "
                               "`recurring.interval_count` and the same currency.", param=param)


def _payment_method_for(emu, customer: dict, pm_id, param="default_payment_method"):
    if not pm_id:
        return None
    pm = emu.store.get("payment_method", pm_id, param)
    if pm["customer"] != customer["id"]:
        raise StripeError(400, f"The customer does not have a payment method with the ID {pm_id}. The payment "
                               "method must be attached to the customer.", param=param)
    return pm_id


def _discounts(emu, params, customer: dict, currency: str, sub_id: str | None = None) -> list[str] | None:
    """Discount ids for `coupon`, `promotion_code` or `discounts[]` (None: none given); validated by
    the coupons family (an unknown coupon is Stripe's `No such coupon`)."""
    if all(params.get(k) in (None, "") for k in ("coupon", "promotion_code", "discounts")):
        return None if all(k not in params for k in ("coupon", "promotion_code", "discounts")) else []
    from . import coupons  # noqa: PLC0415
    sources = coupons.resolve_discounts(emu, params, customer_id=customer["id"], currency=currency)
    if sub_id is None:
        return sources
    return coupons.create_discounts(emu, sources, customer=customer["id"], subscription=sub_id)


def _trial_end(emu, params, now: int, prices: list[dict]) -> int | None:
    if params.get("trial_end") not in (None, ""):
        if params.get("trial_period_days") not in (None, ""):
            raise StripeError(400, "You cannot set both `trial_end` and `trial_period_days`.",
                              param="trial_end")
        if params["trial_end"] == "now":
            return None
        at = as_int(params["trial_end"], "trial_end")
        if at <= now:
            raise StripeError(400, "Invalid timestamp: must be an integer Unix timestamp in the future.",
                              param="trial_end")
        if at > now + 730 * DAY:
            raise StripeError(400, "Invalid timestamp: can be no more than two years in the future.",
                              param="trial_end")
        return at
    days = params.get("trial_period_days")
    if days in (None, "") and as_bool(params.get("trial_from_plan", "false"), "trial_from_plan"):
        days = max([p["recurring"].get("trial_period_days") or 0 for p in prices] or [0]) or None
    if days in (None, ""):
        return None
    days = as_int(days, "trial_period_days")
    if not 0 <= days <= 730:
        raise StripeError(400, "Trial period days must be between 0 and 730.", param="trial_period_days")
    return now + days * DAY if days else None


def subscription_create(emu, params):
    _refuse_not_emulated(params, NOT_EMULATED)
    allow(params, CREATE_FIELDS)
    required(params, "customer")
    customer = emu.store.get("customer", params["customer"], "customer")
    if customer.get("deleted"):
        raise missing("customer", customer["id"], "customer")
    raw_items = as_list(params.get("items"))
    if not raw_items:
        raise StripeError(400, "Missing required param: items.", code="parameter_missing", param="items")
    parsed = _parse_items(emu, raw_items)
    _check_prices([p["price"] for p in parsed], params.get("currency") or None)
    behaviour = params.get("payment_behavior") or "allow_incomplete"
    if behaviour not in PAYMENT_BEHAVIORS or behaviour == "pending_if_incomplete":
        raise StripeError(400, f"Invalid payment_behavior: must be one of allow_incomplete, "
                               f"default_incomplete or error_if_incomplete", param="payment_behavior")
    proration = params.get("proration_behavior") or "create_prorations"
    if proration not in PRORATION_BEHAVIORS:
        raise StripeError(400, "Invalid proration_behavior: must be one of always_invoice, "
                               "create_prorations, or none", param="proration_behavior")
    collection = params.get("collection_method") or "charge_automatically"
    if collection not in ("charge_automatically", "send_invoice"):
        raise StripeError(400, "Invalid collection_method: must be one of charge_automatically or send_invoice",
                          param="collection_method")
    days_until_due = None
    if collection == "send_invoice":
        required(params, "days_until_due")
        days_until_due = as_int(params["days_until_due"], "days_until_due")
    elif params.get("days_until_due") not in (None, ""):
        raise StripeError(400, "days_until_due can only be set when collection_method=send_invoice.",
                          param="days_until_due")
    pm_id = _payment_method_for(emu, customer, params.get("default_payment_method") or None)
    end_behavior = "create_invoice"
    trial_settings = params.get("trial_settings")
    if trial_settings not in (None, ""):
        try:
            end_behavior = trial_settings["end_behavior"]["missing_payment_method"]
        except (TypeError, KeyError):
            raise StripeError(400, "Invalid trial_settings", param="trial_settings") from None
        if end_behavior not in ("cancel", "pause", "create_invoice"):
            raise StripeError(400, "Invalid trial_settings[end_behavior][missing_payment_method]: must be one "
                                   "of cancel, create_invoice, or pause",
                              param="trial_settings[end_behavior][missing_payment_method]")
    sources = _discounts(emu, params, customer, parsed[0]["price"]["currency"]) or []
    default_rates = tax_rates.rate_objects(emu, params.get("default_tax_rates"), "default_tax_rates")
    item_rates = [tax_rates.rate_objects(emu, raw.get("tax_rates"), f"items[{index}][tax_rates]")
                  if isinstance(raw, dict) else [] for index, raw in enumerate(raw_items)]
    with test_clocks.on_customer_clock(emu, customer):
        now = emu.now()
        trial_end = _trial_end(emu, params, now, [p["price"] for p in parsed])
        items = [{"price": p["price"], "quantity": p.get("quantity", 1)} for p in parsed]
        if behaviour == "error_if_incomplete" and not trial_end and not pm_id:
            if not _has_default_payment(emu, customer):
                raise StripeError(400, "This customer has no attached payment source or default payment method. "
                                       "Please consider adding a default payment method.",
                                  code="resource_missing")
        sub = create_subscription(emu, customer, items, pm_id, merge_metadata({}, params.get("metadata")),
                                  trial_end=trial_end)
        for item, entry in zip(sub["items"]["data"], parsed):
            item["metadata"] = entry["metadata"]
        sub["trial_settings"] = {"end_behavior": {"missing_payment_method": end_behavior}}
        sub.update(collection_method=collection, days_until_due=days_until_due,
                   description=params.get("description") or None,
                   discounts=[])
        if sources:
            from . import coupons  # noqa: PLC0415
            sub["discounts"] = coupons.create_discounts(emu, sources, customer=customer["id"],
                                                        subscription=sub["id"])
            coupons.announce_discounts(emu, [], sub["discounts"])
        sub["default_tax_rates"] = default_rates
        for item, rates in zip(sub["items"]["data"], item_rates):
            item["tax_rates"] = rates
        settings = params.get("payment_settings")
        if isinstance(settings, dict) and settings.get("save_default_payment_method"):
            sub["payment_settings"]["save_default_payment_method"] = settings["save_default_payment_method"]
        if params.get("cancel_at_period_end") not in (None, "") and as_bool(params["cancel_at_period_end"],
                                                                             "cancel_at_period_end"):
            schedule_cancel(emu, sub, True)
        if params.get("cancel_at") not in (None, ""):
            at = as_int(params["cancel_at"], "cancel_at")
            if at <= now:
                emu.store.remove(sub["id"])
                raise StripeError(400, "cancel_at must be in the future.", param="cancel_at")
            sub.update(cancel_at=at, cancel_at_period_end=at == sub["current_period_end"])
        invoice = _invoice_for_period(emu, sub, "subscription_create", now, sub["current_period_end"])
        if behaviour == "error_if_incomplete" and not trial_end and invoice["amount_due"] > 0:
            # Stripe charges before creating anything: a failed charge leaves no subscription behind.
            customer_pm = pm_id or customer["invoice_settings"]["default_payment_method"]
            ok, decline_code = payment_methods.charge_ok(emu, customer, customer_pm)
            if not ok:
                for ii in emu.store.all("invoiceitem"):
                    if ii["invoice"] == invoice["id"]:
                        ii["invoice"] = None  # back to pending: nothing was created
                emu.store.remove(invoice["id"])
                emu.store.remove(sub["id"])
                from ..cards import DECLINE_MESSAGES  # noqa: PLC0415
                raise StripeError(402, DECLINE_MESSAGES.get(decline_code, "Your card was declined."),
                                  type="card_error", code="card_declined", decline_code=decline_code)
        start_billing(emu, sub, invoice, behaviour)
    return sub


def start_billing(emu, sub: dict, invoice: dict, behaviour: str = "allow_incomplete"):
    """A new subscription's first invoice: `incomplete` until it is paid (not attempted at all with
    `default_incomplete`); trials and zero invoices start at once."""
    if sub["status"] != "trialing" and invoice["amount_due"] > 0:
        sub["status"] = "incomplete"
    emu.emit("customer.subscription.created", sub)
    emu.emit("invoice.created", invoice)
    if behaviour == "default_incomplete" and sub["status"] == "incomplete":
        invoices.finalize_invoice(emu, invoice)
        return
    ok = _collect(emu, sub, invoice)
    if sub["status"] == "incomplete" and (ok or sub["collection_method"] == "send_invoice"):
        sub["status"] = "active"
        emu.emit("customer.subscription.updated", sub, {"status": "incomplete"})
    if sub["status"] == "trialing" and sub["trial_end"] - emu.now() <= TRIAL_NOTICE_SECONDS:
        announce_trial_end(emu, sub["id"])  # a trial shorter than the notice is announced at once


def start_subscription(emu, customer: dict, items: list[dict], *, pm_id=None, metadata=None, trial_end=None,
                       schedule_id=None) -> dict:
    """A subscription started by another family (a schedule): created, first invoice billed."""
    sub = create_subscription(emu, customer, items, pm_id, metadata, trial_end=trial_end)
    sub["schedule"] = schedule_id
    invoice = _invoice_for_period(emu, sub, "subscription_create", emu.now(), sub["current_period_end"])
    start_billing(emu, sub, invoice)
    return sub


def change_items(emu, sub: dict, items: list[dict], proration: str = "create_prorations"):
    """Replace the subscription's items by `items` ([{"price": price, "quantity": n}]) as an update
    with `proration` would (a schedule's next phase)."""
    changes = [{"id": i["id"], "deleted": "true"} for i in sub["items"]["data"]]
    changes += [{"price": i["price"]["id"], "quantity": str(i["quantity"])} for i in items]
    previous = {}
    kept = {(i["price"]["id"], i["quantity"]) for i in sub["items"]["data"]}
    if kept == {(i["price"]["id"], i["quantity"]) for i in items}:
        return
    invoice_now = _update_items(emu, sub, changes, previous, proration, emu.now())
    if previous:
        emu.emit("customer.subscription.updated", sub, previous)
    if invoice_now == "cycle":
        invoice = _invoice_for_period(emu, sub, "subscription_update", sub["current_period_start"],
                                      sub["current_period_end"])
        emu.emit("invoice.created", invoice)
        _settle(emu, sub, invoice)
    elif invoice_now and proration == "always_invoice":
        _invoice_now(emu, sub)


def _has_default_payment(emu, customer: dict) -> bool:
    return bool(customer["invoice_settings"]["default_payment_method"] or customer.get("default_source"))


# -- the API: list, retrieve, update, cancel, resume ------------------------------------------------
def subscription_list(emu, params):
    items = emu.store.newest_first("subscription")
    status = params.pop("status", None)
    if status is None:
        items = [s for s in items if s["status"] not in ("canceled", "incomplete_expired")]
    elif status == "ended":
        items = [s for s in items if s["status"] in ("canceled", "incomplete_expired")]
    elif status != "all":
        items = [s for s in items if s["status"] == status]
    for key in ("customer", "price", "test_clock", "collection_method"):
        if key in params:
            value = params.pop(key)
            items = [s for s in items if (any(i["price"]["id"] == value for i in s["items"]["data"])
                                          if key == "price" else s.get(key) == value)]
    return emu.store.page(created_filter(items, params.get("created")), params, "/v1/subscriptions")


def subscription_search(emu, params):
    return emu.store.search("subscription", params, {"status", "customer", "created"}, "/v1/subscriptions/search")


def subscription_retrieve(emu, params, id):
    return emu.store.get("subscription", id)


UPDATE_FIELDS = {"cancel_at_period_end", "cancel_at", "metadata", "default_payment_method", "description",
                 "proration_behavior", "proration_date", "cancellation_details", "items", "payment_behavior",
                 "pause_collection", "trial_end", "trial_settings", "coupon", "discounts", "promotion_code",
                 "default_tax_rates", "off_session", "billing_cycle_anchor"}


def subscription_update(emu, params, id):
    _refuse_not_emulated(params, NOT_EMULATED | {"collection_method", "days_until_due", "trial_from_plan",
                                                 "payment_settings"})
    allow(params, UPDATE_FIELDS)
    sub = emu.store.get("subscription", id)
    if sub["status"] in ("canceled", "incomplete_expired") and set(params) - {"metadata", "cancellation_details"}:
        raise StripeError(400, "A canceled subscription can only update its cancellation_details and metadata.")
    proration = params.get("proration_behavior") or "create_prorations"
    if proration not in PRORATION_BEHAVIORS:
        raise StripeError(400, "Invalid proration_behavior: must be one of always_invoice, "
                               "create_prorations, or none", param="proration_behavior")
    if params.get("payment_behavior") not in (None, "", *PAYMENT_BEHAVIORS):
        raise StripeError(400, "Invalid payment_behavior", param="payment_behavior")
    customer = emu.store.objects[sub["customer"]]
    with test_clocks.on_customer_clock(emu, customer):
        return _update(emu, sub, customer, params, proration)


def _update(emu, sub, customer, params, proration):
    previous = {}
    now = emu.now()
    if "metadata" in params:
        metadata = merge_metadata(sub["metadata"], params["metadata"])
        if metadata != sub["metadata"]:
            previous["metadata"] = sub["metadata"]
            sub["metadata"] = metadata
    if "description" in params and sub["description"] != (params["description"] or None):
        previous["description"] = sub["description"]
        sub["description"] = params["description"] or None
    if "default_payment_method" in params:
        pm_id = _payment_method_for(emu, customer, params["default_payment_method"] or None)
        if pm_id != sub["default_payment_method"]:
            previous["default_payment_method"] = sub["default_payment_method"]
            sub["default_payment_method"] = pm_id
    if "default_tax_rates" in params:
        rates = tax_rates.rate_objects(emu, params["default_tax_rates"], "default_tax_rates")
        if rates != sub["default_tax_rates"]:
            previous["default_tax_rates"] = sub["default_tax_rates"]
            sub["default_tax_rates"] = rates
    discounts = _discounts(emu, params, customer, sub["currency"], sub["id"])
    if discounts is not None:
        if discounts != sub["discounts"]:
            from . import coupons  # noqa: PLC0415
            previous["discounts"] = sub["discounts"]
            sub["discounts"] = discounts
            coupons.announce_discounts(emu, previous["discounts"], discounts)
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
            if at <= now:
                raise StripeError(400, "cancel_at must be in the future.", param="cancel_at")
            sub.update(cancel_at=at, canceled_at=now, cancel_at_period_end=at == sub["current_period_end"])
        previous.update({k: v for k, v in old.items() if sub[k] != v and k not in previous})
    if "pause_collection" in params:
        _update_pause(sub, params["pause_collection"], now, previous)
    if "trial_settings" in params and isinstance(params["trial_settings"], dict):
        try:
            value = params["trial_settings"]["end_behavior"]["missing_payment_method"]
        except (TypeError, KeyError):
            raise StripeError(400, "Invalid trial_settings", param="trial_settings") from None
        if value not in ("cancel", "pause", "create_invoice"):
            raise StripeError(400, "Invalid trial_settings[end_behavior][missing_payment_method]",
                              param="trial_settings[end_behavior][missing_payment_method]")
        if value != sub["trial_settings"]["end_behavior"]["missing_payment_method"]:
            previous["trial_settings"] = copy.deepcopy(sub["trial_settings"])
            sub["trial_settings"]["end_behavior"]["missing_payment_method"] = value
    invoice_now = False
    if "items" in params:
        at = as_int(params["proration_date"], "proration_date") if params.get("proration_date") else now
        if not sub["current_period_start"] <= at <= sub["current_period_end"]:
            raise StripeError(400, "proration_date must be within the current billing period.",
                              param="proration_date")
        invoice_now = _update_items(emu, sub, as_list(params["items"]), previous, proration, at)
    if params.get("billing_cycle_anchor") not in (None, ""):
        if params["billing_cycle_anchor"] not in ("now", "unchanged"):
            raise StripeError(400, "Invalid billing_cycle_anchor: must be one of now or unchanged",
                              param="billing_cycle_anchor")
        if params["billing_cycle_anchor"] == "now" and sub["status"] not in ("trialing", "paused"):
            _reset_cycle(emu, sub, now, previous, proration)
            invoice_now = "cycle"
    trial_now = params.get("trial_end") == "now" and sub["status"] == "trialing"
    if params.get("trial_end") not in (None, "", "now"):
        at = as_int(params["trial_end"], "trial_end")
        if at <= now:
            raise StripeError(400, "Invalid timestamp: must be an integer Unix timestamp in the future.",
                              param="trial_end")
        previous.update({k: sub[k] for k in ("trial_end", "current_period_end", "status") if k not in previous})
        sub.update(trial_end=at, trial_start=sub["trial_start"] or now, current_period_end=at,
                   billing_cycle_anchor=at, status="trialing" if sub["status"] in ("trialing", "active")
                   else sub["status"])
        for item in sub["items"]["data"]:
            item["current_period_end"] = at
        emu.store.table(CYCLES)[sub["id"]] = 0
        emu.store.table(TRIAL_WILL_END).pop(sub["id"], None)
    previous = {k: v for k, v in previous.items() if sub.get(k) != v}
    if previous:
        emu.emit("customer.subscription.updated", sub, previous)
    if trial_now:
        # Ending the trial now: Stripe announces it, then bills a new period from now.
        emu.emit("customer.subscription.trial_will_end", sub)
        sub.update(trial_end=now, current_period_end=now, billing_cycle_anchor=now)
        emu.store.table(CYCLES)[sub["id"]] = 0
        renew_subscription(emu, sub["id"])
    elif invoice_now == "cycle":
        invoice = _invoice_for_period(emu, sub, "subscription_update", sub["current_period_start"],
                                      sub["current_period_end"])
        emu.emit("invoice.created", invoice)
        _settle(emu, sub, invoice)
    elif invoice_now and proration == "always_invoice":
        _invoice_now(emu, sub)
    return sub


def _update_pause(sub: dict, value, now: int, previous: dict):
    old = copy.deepcopy(sub["pause_collection"])
    if value == "":
        sub["pause_collection"] = None
    elif isinstance(value, dict):
        allow(value, {"behavior", "resumes_at"})
        behavior = value.get("behavior")
        if behavior not in PAUSE_BEHAVIORS:
            raise StripeError(400, "Invalid pause_collection[behavior]: must be one of keep_as_draft, "
                                   "mark_uncollectible, or void", param="pause_collection[behavior]")
        resumes_at = None
        if value.get("resumes_at") not in (None, ""):
            resumes_at = as_int(value["resumes_at"], "pause_collection[resumes_at]")
            if resumes_at <= now:
                raise StripeError(400, "pause_collection[resumes_at] must be in the future.",
                                  param="pause_collection[resumes_at]")
        sub["pause_collection"] = {"behavior": behavior, "resumes_at": resumes_at}
    else:
        raise StripeError(400, "Invalid pause_collection", param="pause_collection")
    if old != sub["pause_collection"]:
        previous["pause_collection"] = old


def _reset_cycle(emu, sub: dict, now: int, previous: dict, proration: str):
    """`billing_cycle_anchor=now` (or an interval change): the period restarts now and is invoiced now."""
    price = sub["items"]["data"][0]["price"]
    previous.update({k: sub[k] for k in ("billing_cycle_anchor", "current_period_start", "current_period_end")
                     if k not in previous})
    if proration != "none" and sub["status"] in ("active", "past_due"):
        for item in sub["items"]["data"]:
            for line in _proration_lines(emu, sub, item, None, now):
                _pending_proration(emu, sub, line, now)
    end = shapes.add_interval(now, price["recurring"]["interval"], price["recurring"]["interval_count"])
    sub.update(billing_cycle_anchor=now, current_period_start=now, current_period_end=end)
    for item in sub["items"]["data"]:
        item.update(current_period_start=now, current_period_end=end)
    emu.store.table(CYCLES)[sub["id"]] = 1


def _update_items(emu, sub: dict, changes: list, previous: dict, proration: str, at: int):
    """Add, change (price, quantity) or delete items. Prorations per `proration`; returns what to
    invoice now: "always" when the billing interval changed (Stripe bills the new cycle at once)."""
    parsed = _parse_items(emu, changes, allow_ids=True)
    old_items = copy.deepcopy(sub["items"])
    old_interval = (sub["items"]["data"][0]["price"]["recurring"]["interval"],
                    sub["items"]["data"][0]["price"]["recurring"]["interval_count"])
    pairs = []  # (old item or None, new item or None)
    for index, (entry, raw) in enumerate(zip(parsed, changes)):
        item = None
        if entry["id"]:
            item = next((i for i in sub["items"]["data"] if i["id"] == entry["id"]), None)
            if item is None:
                raise missing("subscription_item", entry["id"], f"items[{index}][id]")
        deleted = raw.get("deleted") not in (None, "") and as_bool(raw["deleted"], f"items[{index}][deleted]")
        if deleted:
            if item is None:
                raise StripeError(400, "Give items[n][id] to delete an item.", param=f"items[{index}][id]")
            pairs.append((copy.deepcopy(item), None))
            sub["items"]["data"].remove(item)
            continue
        if item is None:
            new = shapes.subscription_item(item_id=shapes.new_id("si_", 14), subscription_id=sub["id"],
                                           price_obj=entry["price"], quantity=entry.get("quantity", 1),
                                           created=at, period_start=sub["current_period_start"],
                                           period_end=sub["current_period_end"])
            new["metadata"] = entry["metadata"]
            new["tax_rates"] = entry.get("tax_rates", [])
            sub["items"]["data"].append(new)
            pairs.append((None, new))
            continue
        before = copy.deepcopy(item)
        if "price" in entry and entry["price"]["id"] != item["price"]["id"]:
            item.update(price=copy.deepcopy(entry["price"]), plan=shapes.plan_from_price(entry["price"]))
        if "quantity" in entry:
            item["quantity"] = entry["quantity"]
        if raw.get("metadata") not in (None,):
            item["metadata"] = merge_metadata(item["metadata"], raw.get("metadata"))
        if "tax_rates" in entry:
            item["tax_rates"] = entry["tax_rates"]
        if (before["price"]["id"], before["quantity"]) != (item["price"]["id"], item["quantity"]):
            pairs.append((before, item))
    if not sub["items"]["data"]:
        sub["items"] = old_items
        raise StripeError(400, "A subscription must have at least one active plan.", param="items")
    try:
        _check_prices([i["price"] for i in sub["items"]["data"]], sub["currency"])
    except StripeError:
        sub["items"] = old_items
        raise
    sub["items"]["total_count"] = len(sub["items"]["data"])
    if old_items == sub["items"]:
        return False
    previous["items"] = old_items
    new_interval = (sub["items"]["data"][0]["price"]["recurring"]["interval"],
                    sub["items"]["data"][0]["price"]["recurring"]["interval_count"])
    if new_interval != old_interval and sub["status"] in ("active", "past_due"):
        # Credit the old items for the time left, then a new cycle billed now.
        if proration != "none":
            for old, _ in pairs:
                for line in _proration_lines(emu, sub, old, None, at):
                    _pending_proration(emu, sub, line, at)
        price = sub["items"]["data"][0]["price"]
        end = shapes.add_interval(at, price["recurring"]["interval"], price["recurring"]["interval_count"])
        previous.update({k: sub[k] for k in ("billing_cycle_anchor", "current_period_start", "current_period_end")})
        sub.update(billing_cycle_anchor=at, current_period_start=at, current_period_end=end)
        for item in sub["items"]["data"]:
            item.update(current_period_start=at, current_period_end=end)
        emu.store.table(CYCLES)[sub["id"]] = 1
        return "cycle"
    if proration == "none" or sub["status"] not in ("active", "past_due"):
        return False
    for old, new in pairs:
        for line in _proration_lines(emu, sub, old, new, at):
            _pending_proration(emu, sub, line, at)
    return True


def subscription_cancel(emu, params, id):
    allow(params, {"cancellation_details", "invoice_now", "prorate"})
    sub = emu.store.get("subscription", id)
    if sub["status"] in ("canceled", "incomplete_expired"):
        raise StripeError(400, f"No such subscription: '{id}'. This subscription has already been canceled.",
                          code="resource_missing", param="id")
    details = params.get("cancellation_details") if isinstance(params.get("cancellation_details"), dict) else {}
    customer = emu.store.objects[sub["customer"]]
    with test_clocks.on_customer_clock(emu, customer):
        prorate = params.get("prorate") not in (None, "") and as_bool(params["prorate"], "prorate")
        if prorate and sub["status"] in ("active", "past_due"):
            for item in sub["items"]["data"]:
                for line in _proration_lines(emu, sub, item, None, emu.now()):
                    _pending_proration(emu, sub, line, emu.now())
        cancel_subscription(emu, sub, reason="cancellation_requested", comment=details.get("comment"),
                            feedback=details.get("feedback"))
        if params.get("invoice_now") not in (None, "") and as_bool(params["invoice_now"], "invoice_now"):
            _invoice_now(emu, sub)
    return sub


def subscription_pause(emu, params, id):
    """Pause an active subscription: no invoices, no new periods until it is resumed (dahlia's pause)."""
    _refuse_not_emulated(params, {"bill_for"})
    allow(params, {"type"})
    required(params, "type")
    if params["type"] != "subscription":
        raise StripeError(400, "Invalid type: must be subscription", param="type")
    sub = emu.store.get("subscription", id)
    if sub["schedule"]:
        raise StripeError(400, "You cannot pause a subscription that is attached to a subscription schedule.")
    if sub["status"] not in ("active", "past_due", "trialing"):
        raise StripeError(400, f"You cannot pause a subscription with status `{sub['status']}`.")
    with test_clocks.on_customer_clock(emu, emu.store.objects[sub["customer"]]):
        previous = {"status": sub["status"]}
        sub["status"] = "paused"
        emu.emit("customer.subscription.updated", sub, previous)
        emu.emit("customer.subscription.paused", sub)
    return sub


def subscription_resume(emu, params, id):
    _refuse_not_emulated(params, {"proration_behavior", "proration_date"})
    allow(params, {"billing_cycle_anchor", "payment_behavior"})
    sub = emu.store.get("subscription", id)
    if sub["status"] != "paused":
        raise StripeError(400, "Only subscriptions with status `paused` can be resumed.")
    anchor = params.get("billing_cycle_anchor") or "now"
    if anchor not in ("now", "unchanged"):
        raise StripeError(400, "Invalid billing_cycle_anchor: must be one of now or unchanged",
                          param="billing_cycle_anchor")
    behaviour = params.get("payment_behavior") or "resume_on_payment_attempt"
    if behaviour not in ("resume_on_payment_attempt", "resume_on_payment_success"):
        raise StripeError(400, "Invalid payment_behavior: must be one of resume_on_payment_attempt or "
                               "resume_on_payment_success", param="payment_behavior")
    customer = emu.store.objects[sub["customer"]]
    with test_clocks.on_customer_clock(emu, customer):
        now = emu.now()
        previous = {k: sub[k] for k in ("status", "current_period_start", "current_period_end",
                                        "billing_cycle_anchor", "latest_invoice")}
        cycles = emu.store.table(CYCLES)[sub["id"]]
        price = sub["items"]["data"][0]["price"]
        if anchor == "now" or sub["current_period_end"] <= now:
            end = shapes.add_interval(now, price["recurring"]["interval"], price["recurring"]["interval_count"])
            sub.update(billing_cycle_anchor=now, current_period_start=now, current_period_end=end)
            emu.store.table(CYCLES)[sub["id"]] = 1
        for item in sub["items"]["data"]:
            item.update(current_period_start=sub["current_period_start"], current_period_end=sub["current_period_end"])
        sub["status"] = "active"
        invoice = _invoice_for_period(emu, sub, "subscription_cycle", sub["current_period_start"],
                                      sub["current_period_end"])
        emu.emit("invoice.created", invoice)
        ok = _collect(emu, sub, invoice)
        if ok is False and behaviour == "resume_on_payment_success":
            # The subscription stays paused as it was; the unpaid invoice is voided.
            for key, value in previous.items():
                sub[key] = value
            emu.store.table(CYCLES)[sub["id"]] = cycles
            for item in sub["items"]["data"]:
                item.update(current_period_start=sub["current_period_start"],
                            current_period_end=sub["current_period_end"])
            _void(emu, invoice)
            raise StripeError(402, "The payment to resume the subscription failed; it stays paused.",
                              type="card_error", code="card_declined")
        if ok is False:
            sub["status"] = "past_due"
        emu.emit("customer.subscription.updated", sub, {k: v for k, v in previous.items() if sub[k] != v})
        emu.emit("customer.subscription.resumed", sub)
    return sub


def subscription_items_list(emu, params):
    required(params, "subscription")
    sub = emu.store.get("subscription", params.pop("subscription"), "subscription")
    return emu.store.page(sub["items"]["data"], params, "/v1/subscription_items")


def register(api):
    api.add("POST", "/v1/subscriptions", subscription_create)
    api.add("GET", "/v1/subscriptions", subscription_list)
    api.add("GET", "/v1/subscriptions/search", subscription_search)
    api.add("GET", "/v1/subscriptions/{id}", subscription_retrieve)
    api.add("POST", "/v1/subscriptions/{id}", subscription_update)
    api.add("DELETE", "/v1/subscriptions/{id}", subscription_cancel)
    api.add("POST", "/v1/subscriptions/{id}/pause", subscription_pause)
    api.add("POST", "/v1/subscriptions/{id}/resume", subscription_resume)
    api.add("GET", "/v1/subscription_items", subscription_items_list)
    api.on_clock(due)


def due(emu, until):
    found = []
    announced = emu.store.table(TRIAL_WILL_END)
    for sub in emu.store.all("subscription"):
        status = sub["status"]
        if status == "incomplete":
            expires = sub["created"] + INCOMPLETE_HOURS * 3600
            if expires <= until:
                found.append((expires, 1, sub["id"], expire_incomplete))
            continue
        if status == "trialing" and announced.get(sub["id"]) != sub["trial_end"]:
            notice = max(sub["trial_end"] - TRIAL_NOTICE_SECONDS, sub["trial_start"] or sub["created"])
            if notice <= until:
                found.append((notice, 1, sub["id"], announce_trial_end))
                continue
        pause = sub["pause_collection"]
        if pause and pause.get("resumes_at") and pause["resumes_at"] <= until:
            found.append((pause["resumes_at"], 1, sub["id"], resume_collection))
        if status in ("active", "past_due", "trialing", "unpaid"):
            if sub["cancel_at"] and sub["cancel_at"] < sub["current_period_end"] and sub["cancel_at"] <= until:
                found.append((sub["cancel_at"], 2, sub["id"], cancel_scheduled))
            elif sub["current_period_end"] <= until:
                found.append((sub["current_period_end"], 2, sub["id"], renew_subscription))
    return found
