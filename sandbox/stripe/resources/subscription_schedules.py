"""Subscription schedules: phases that start a subscription and change its items when the clock reaches them.

`not_started` until `start_date` (then the subscription is created), `active` while a phase runs, and at
the end of the last phase `released` (end_behavior=release: the subscription goes on alone) or
`completed` with the subscription canceled (end_behavior=cancel). `subscription_schedule.expiring` 7
days before the end. `release` and `cancel` through the API.
"""
from __future__ import annotations

import copy

from .. import shapes
from ..errors import StripeError, allow, metadata as merge_metadata, missing, required
from ..params import as_int, as_list
from ..store import created_filter
from . import subscriptions, test_clocks

DAY = 86400
EXPIRING_NOTICE = 7 * DAY
EXPIRING_SENT = "subscription_schedule.expiring"  # store table: schedule id -> end date announced
FIELDS = {"customer", "from_subscription", "phases", "start_date", "end_behavior", "metadata"}
PHASE_FIELDS = {"items", "iterations", "end_date", "start_date", "trial_end", "proration_behavior", "metadata",
                "default_payment_method"}
PHASE_ITEM_FIELDS = {"price", "quantity", "plan"}
# Stripe parameters the sandbox knows but does not emulate: refused with a clear error, never dropped.
NOT_EMULATED = {"default_settings", "billing_mode"}
PHASE_NOT_EMULATED = {"trial", "description", "currency", "collection_method", "default_tax_rates", "discounts",
                      "coupon", "add_invoice_items", "billing_cycle_anchor", "invoice_settings", "automatic_tax",
                      "application_fee_percent", "on_behalf_of", "transfer_data", "billing_thresholds", "duration"}
PHASE_ITEM_NOT_EMULATED = {"metadata", "tax_rates", "discounts", "price_data", "billing_thresholds"}


def _refuse_not_emulated(params: dict, names: set[str], where: str = ""):
    for key in params:
        if key in names:
            name = f"{where}[{key}]" if where else key
            raise StripeError(400, f"The Stripe sandbox does not emulate `{name}` on subscription schedules.",
                              param=name)


def _schedule(*, schedule_id: str, customer: dict, created: int, end_behavior: str, metadata: dict) -> dict:
    obj = shapes.example("subscription_schedule")
    obj.update(id=schedule_id, customer=customer["id"], created=created, end_behavior=end_behavior,
               metadata=metadata, livemode=False, status="not_started", subscription=None, canceled_at=None,
               completed_at=None, released_at=None, released_subscription=None, current_phase=None,
               application=None, test_clock=customer.get("test_clock"), customer_account=None)
    settings = obj["default_settings"]
    settings.update(application_fee_percent=None, transfer_data=None, billing_thresholds=None,
                    default_payment_method=None, description=None, on_behalf_of=None)
    settings["automatic_tax"] = {"enabled": False, "liability": None, "disabled_reason": None}
    settings["invoice_settings"] = {"account_tax_ids": None, "days_until_due": None, "issuer": {"type": "self"},
                                    "custom_fields": None, "description": None, "footer": None}
    obj["billing_mode"] = {"type": "classic", "flexible": None}
    return obj


def _phase(*, items: list[dict], start: int, end: int, currency: str, proration: str, trial_end, metadata,
           default_payment_method) -> dict:
    phase = copy.deepcopy(shapes.example("subscription_schedule")["phases"][0])
    phase.update(start_date=start, end_date=end, currency=currency, proration_behavior=proration,
                 trial_end=trial_end, metadata=metadata, default_payment_method=default_payment_method,
                 transfer_data=None, billing_thresholds=None, add_invoice_items=[], discounts=[],
                 default_tax_rates=[], description=None, collection_method=None, on_behalf_of=None,
                 application_fee_percent=None, billing_cycle_anchor=None, invoice_settings=None)
    phase["items"] = [{"discounts": [], "metadata": {}, "price": i["price"]["id"], "quantity": i["quantity"],
                       "tax_rates": [], "plan": shapes.plan_from_price(i["price"]), "billing_thresholds": None}
                      for i in items]
    return phase


def _parse_phases(emu, raw_phases, start: int, customer: dict) -> list[dict]:
    phases = []
    if not raw_phases:
        raise StripeError(400, "Missing required param: phases.", code="parameter_missing", param="phases")
    at = start
    for index, raw in enumerate(raw_phases):
        where = f"phases[{index}]"
        if not isinstance(raw, dict):
            raise StripeError(400, "Invalid object", param=where)
        _refuse_not_emulated(raw, PHASE_NOT_EMULATED, where)
        for key in raw:
            if key not in PHASE_FIELDS:
                raise StripeError(400, f"Received unknown parameter: {where}[{key}]", param=f"{where}[{key}]")
        raw_items = as_list(raw.get("items"))
        if not raw_items:
            raise StripeError(400, f"Missing required param: {where}[items].", code="parameter_missing",
                              param=f"{where}[items]")
        items = []
        for n, item in enumerate(raw_items):
            param = f"{where}[items][{n}]"
            if not isinstance(item, dict):
                raise StripeError(400, "Invalid object", param=param)
            _refuse_not_emulated(item, PHASE_ITEM_NOT_EMULATED, param)
            for key in item:
                if key not in PHASE_ITEM_FIELDS:
                    raise StripeError(400, f"Received unknown parameter: {param}[{key}]", param=f"{param}[{key}]")
            price_id = item.get("price") or item.get("plan")
            if not price_id:
                raise StripeError(400, f"Missing required param: {param}[price].", code="parameter_missing",
                                  param=f"{param}[price]")
            price = emu.store.get("price", price_id, f"{param}[price]")
            if price["type"] != "recurring":
                raise StripeError(400, "The price specified is set to `type=one_time` but this field only accepts "
                                       "prices with `type=recurring`.", param=f"{param}[price]")
            items.append({"price": price, "quantity": as_int(item.get("quantity") or 1, f"{param}[quantity]")})
        subscriptions._check_prices([i["price"] for i in items], param=f"{where}[items]")
        recurring = items[0]["price"]["recurring"]
        if raw.get("end_date") not in (None, ""):
            end = as_int(raw["end_date"], f"{where}[end_date]")
        else:
            iterations = as_int(raw.get("iterations") or 1, f"{where}[iterations]")
            end = shapes.add_interval(at, recurring["interval"], recurring["interval_count"] * iterations)
        if end <= at:
            raise StripeError(400, f"The end_date of {where} must be after its start date.", param=f"{where}[end_date]")
        proration = raw.get("proration_behavior") or "create_prorations"
        if proration not in subscriptions.PRORATION_BEHAVIORS:
            raise StripeError(400, "Invalid proration_behavior", param=f"{where}[proration_behavior]")
        trial_end = as_int(raw["trial_end"], f"{where}[trial_end]") if raw.get("trial_end") not in (None, "") else None
        pm_id = subscriptions._payment_method_for(emu, customer, raw.get("default_payment_method") or None,
                                                  f"{where}[default_payment_method]")
        phases.append(_phase(items=items, start=at, end=end, currency=items[0]["price"]["currency"],
                             proration=proration, trial_end=trial_end, metadata=merge_metadata({}, raw.get("metadata")),
                             default_payment_method=pm_id))
        at = end
    return phases


def _phase_items(emu, phase: dict) -> list[dict]:
    return [{"price": emu.store.objects[i["price"]], "quantity": i["quantity"]} for i in phase["items"]]


def _current_phase(schedule: dict, at: int) -> dict | None:
    return next((p for p in schedule["phases"] if p["start_date"] <= at < p["end_date"]), None)


def _start(emu, schedule: dict):
    """start_date reached: the first phase's subscription."""
    customer = emu.store.objects[schedule["customer"]]
    phase = schedule["phases"][0]
    trial_end = phase["trial_end"] if phase["trial_end"] and phase["trial_end"] > emu.now() else None
    previous = {"status": schedule["status"], "subscription": None, "current_phase": None}
    sub = subscriptions.start_subscription(emu, customer, _phase_items(emu, phase),
                                           pm_id=phase["default_payment_method"], metadata=phase["metadata"],
                                           trial_end=trial_end, schedule_id=schedule["id"])
    schedule.update(status="active", subscription=sub["id"],
                    current_phase={"start_date": phase["start_date"], "end_date": phase["end_date"]})
    emu.emit("subscription_schedule.updated", schedule, previous)


def _next_phase(emu, schedule_id: str):
    """The current phase ended: the next phase's items on the subscription, or the schedule's end."""
    schedule = emu.store.objects[schedule_id]
    now = emu.now()
    sub = emu.store.objects.get(schedule["subscription"] or "")
    phase = _current_phase(schedule, now)
    previous = {"current_phase": copy.deepcopy(schedule["current_phase"])}
    if phase is None or sub is None or sub["status"] in ("canceled", "incomplete_expired"):
        _end(emu, schedule, sub)
        return
    subscriptions.change_items(emu, sub, _phase_items(emu, phase), phase["proration_behavior"])
    schedule["current_phase"] = {"start_date": phase["start_date"], "end_date": phase["end_date"]}
    emu.emit("subscription_schedule.updated", schedule, previous)


def _end(emu, schedule: dict, sub: dict | None):
    now = emu.now()
    if schedule["end_behavior"] == "cancel":
        schedule.update(status="completed", completed_at=now, current_phase=None)
        if sub and sub["status"] not in ("canceled", "incomplete_expired"):
            subscriptions.cancel_subscription(emu, sub, reason="cancellation_requested")
        emu.emit("subscription_schedule.completed", schedule)
        return
    _release(emu, schedule)


def subscription_ended(emu, sub: dict):
    """The schedule's subscription was canceled outside the schedule (API, retries, portal): Stripe
    aborts the schedule."""
    schedule = emu.store.objects.get(sub["schedule"])
    if schedule and schedule["status"] == "active" and schedule["subscription"] == sub["id"]:
        schedule.update(status="canceled", canceled_at=emu.now(), current_phase=None)
        emu.emit("subscription_schedule.aborted", schedule)


def _release(emu, schedule: dict, preserve_cancel_date: bool = True):
    sub = emu.store.objects.get(schedule["subscription"] or "")
    if sub:
        sub["schedule"] = None
        emu.emit("customer.subscription.updated", sub, {"schedule": schedule["id"]})
    schedule.update(status="released", released_at=emu.now(), released_subscription=schedule["subscription"],
                    subscription=None, current_phase=None)
    emu.emit("subscription_schedule.released", schedule)


def _announce_expiring(emu, schedule_id: str):
    schedule = emu.store.objects[schedule_id]
    emu.store.table(EXPIRING_SENT)[schedule_id] = schedule["phases"][-1]["end_date"]
    emu.emit("subscription_schedule.expiring", schedule)


def schedule_create(emu, params):
    _refuse_not_emulated(params, NOT_EMULATED)
    allow(params, FIELDS)
    end_behavior = params.get("end_behavior") or "release"
    if end_behavior not in ("release", "cancel"):
        raise StripeError(400, "Invalid end_behavior: must be one of release or cancel", param="end_behavior")
    if params.get("from_subscription"):
        if params.get("customer") or params.get("phases") or params.get("start_date"):
            raise StripeError(400, "You cannot set `customer`, `phases` or `start_date` when using "
                                   "`from_subscription`.", param="from_subscription")
        sub = emu.store.get("subscription", params["from_subscription"], "from_subscription")
        if sub["schedule"]:
            raise StripeError(400, f"The subscription {sub['id']} is already attached to a schedule.",
                              param="from_subscription")
        if sub["status"] in ("canceled", "incomplete_expired"):
            raise StripeError(400, "You cannot create a schedule from a canceled subscription.",
                              param="from_subscription")
        customer = emu.store.objects[sub["customer"]]
        with test_clocks.on_customer_clock(emu, customer):
            schedule = _schedule(schedule_id=shapes.new_id("sub_sched_"), customer=customer, created=emu.now(),
                                 end_behavior=end_behavior, metadata=merge_metadata({}, params.get("metadata")))
            items = [{"price": i["price"], "quantity": i["quantity"]} for i in sub["items"]["data"]]
            schedule["phases"] = [_phase(items=items, start=sub["current_period_start"],
                                         end=sub["current_period_end"], currency=sub["currency"],
                                         proration="create_prorations", trial_end=sub["trial_end"],
                                         metadata={}, default_payment_method=sub["default_payment_method"])]
            schedule.update(status="active", subscription=sub["id"],
                            current_phase={"start_date": sub["current_period_start"],
                                           "end_date": sub["current_period_end"]})
            emu.store.put(schedule)
            sub["schedule"] = schedule["id"]
            emu.emit("subscription_schedule.created", schedule)
            emu.emit("customer.subscription.updated", sub, {"schedule": None})
        return schedule
    required(params, "customer")
    customer = emu.store.get("customer", params["customer"], "customer")
    if customer.get("deleted"):
        raise missing("customer", customer["id"], "customer")
    with test_clocks.on_customer_clock(emu, customer):
        now = emu.now()
        start_param = params.get("start_date")
        start = now if start_param in (None, "", "now") else as_int(start_param, "start_date")
        schedule = _schedule(schedule_id=shapes.new_id("sub_sched_"), customer=customer, created=now,
                             end_behavior=end_behavior, metadata=merge_metadata({}, params.get("metadata")))
        schedule["phases"] = _parse_phases(emu, as_list(params.get("phases")), start, customer)
        emu.store.put(schedule)
        emu.emit("subscription_schedule.created", schedule)
        if start <= now:
            _start(emu, schedule)
    return schedule


def schedule_update(emu, params, id):
    _refuse_not_emulated(params, NOT_EMULATED)
    allow(params, {"phases", "end_behavior", "metadata", "proration_behavior"})
    schedule = emu.store.get("subscription_schedule", id)
    if schedule["status"] not in ("not_started", "active"):
        raise StripeError(400, f"You cannot update a subscription schedule that is currently in the "
                               f"`{schedule['status']}` status. It must be in `not_started` or `active`.")
    customer = emu.store.objects[schedule["customer"]]
    previous = {}
    with test_clocks.on_customer_clock(emu, customer):
        if "end_behavior" in params:
            if params["end_behavior"] not in ("release", "cancel"):
                raise StripeError(400, "Invalid end_behavior: must be one of release or cancel", param="end_behavior")
            if params["end_behavior"] != schedule["end_behavior"]:
                previous["end_behavior"] = schedule["end_behavior"]
                schedule["end_behavior"] = params["end_behavior"]
        if "metadata" in params:
            metadata = merge_metadata(schedule["metadata"], params["metadata"])
            if metadata != schedule["metadata"]:
                previous["metadata"] = schedule["metadata"]
                schedule["metadata"] = metadata
        if "phases" in params:
            raw = as_list(params["phases"])
            first = raw[0] if raw and isinstance(raw[0], dict) else {}
            start = as_int(first["start_date"], "phases[0][start_date]") if first.get("start_date") not in (
                None, "", "now") else schedule["phases"][0]["start_date"]
            phases = _parse_phases(emu, raw, start, customer)
            previous["phases"] = schedule["phases"]
            schedule["phases"] = phases
            emu.store.table(EXPIRING_SENT).pop(id, None)
            sub = emu.store.objects.get(schedule["subscription"] or "")
            phase = _current_phase(schedule, emu.now())
            if schedule["status"] == "active" and sub and phase:
                proration = params.get("proration_behavior") or phase["proration_behavior"]
                subscriptions.change_items(emu, sub, _phase_items(emu, phase), proration)
                previous["current_phase"] = schedule["current_phase"]
                schedule["current_phase"] = {"start_date": phase["start_date"], "end_date": phase["end_date"]}
        if previous:
            emu.emit("subscription_schedule.updated", schedule, previous)
    return schedule


def schedule_cancel(emu, params, id):
    allow(params, {"invoice_now", "prorate"})
    schedule = emu.store.get("subscription_schedule", id)
    if schedule["status"] not in ("not_started", "active"):
        raise StripeError(400, f"You cannot cancel a subscription schedule that is currently in the "
                               f"`{schedule['status']}` status. It must be in `not_started` or `active`.")
    customer = emu.store.objects[schedule["customer"]]
    with test_clocks.on_customer_clock(emu, customer):
        sub = emu.store.objects.get(schedule["subscription"] or "")
        schedule.update(status="canceled", canceled_at=emu.now(), current_phase=None)
        if sub and sub["status"] not in ("canceled", "incomplete_expired"):
            subscriptions.cancel_subscription(emu, sub, reason="cancellation_requested")
        emu.emit("subscription_schedule.canceled", schedule)
    return schedule


def schedule_release(emu, params, id):
    allow(params, {"preserve_cancel_date"})
    schedule = emu.store.get("subscription_schedule", id)
    if schedule["status"] not in ("not_started", "active"):
        raise StripeError(400, f"You cannot release a subscription schedule that is currently in the "
                               f"`{schedule['status']}` status. It must be in `not_started` or `active`.")
    with test_clocks.on_customer_clock(emu, emu.store.objects[schedule["customer"]]):
        _release(emu, schedule)
    return schedule


def schedule_retrieve(emu, params, id):
    return emu.store.get("subscription_schedule", id)


def schedule_list(emu, params):
    items = emu.store.newest_first("subscription_schedule")
    if "customer" in params:
        customer = params.pop("customer")
        items = [s for s in items if s["customer"] == customer]
    if "scheduled" in params:
        wanted = params.pop("scheduled") in ("true", True)
        items = [s for s in items if (s["status"] == "not_started") == wanted]
    return emu.store.page(created_filter(items, params.get("created")), params, "/v1/subscription_schedules")


def register(api):
    api.add("POST", "/v1/subscription_schedules", schedule_create)
    api.add("GET", "/v1/subscription_schedules", schedule_list)
    api.add("GET", "/v1/subscription_schedules/{id}", schedule_retrieve)
    api.add("POST", "/v1/subscription_schedules/{id}", schedule_update)
    api.add("POST", "/v1/subscription_schedules/{id}/cancel", schedule_cancel)
    api.add("POST", "/v1/subscription_schedules/{id}/release", schedule_release)
    api.on_clock(due)


def _start_due(emu, schedule_id: str):
    _start(emu, emu.store.objects[schedule_id])


def due(emu, until):
    found = []
    sent = emu.store.table(EXPIRING_SENT)
    for schedule in emu.store.all("subscription_schedule"):
        if schedule["status"] == "not_started" and schedule["phases"][0]["start_date"] <= until:
            found.append((schedule["phases"][0]["start_date"], 1, schedule["id"], _start_due))
        elif schedule["status"] == "active" and schedule["current_phase"]:
            end = schedule["phases"][-1]["end_date"]
            notice = end - EXPIRING_NOTICE
            if sent.get(schedule["id"]) != end and notice <= until and notice > schedule["created"]:
                found.append((notice, 0, schedule["id"], _announce_expiring))
            elif schedule["current_phase"]["end_date"] <= until:
                found.append((schedule["current_phase"]["end_date"], 1, schedule["id"], _next_phase))
    return found
