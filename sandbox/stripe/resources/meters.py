"""Billing meters, meter events, event summaries, and the tiered/metered price arithmetic.

Meter events are not Stripe objects with ids: they live in side tables, by identifier (for the 24-hour
deduplication) and by meter and customer (for summaries and the renewal invoice's usage line).
"""
from __future__ import annotations

import hashlib
from decimal import Decimal, InvalidOperation

from .. import shapes
from ..errors import StripeError, allow, required
from ..params import as_int, as_list
from ..store import created_filter
from .tax_rates import round_half_up

EVENTS = "billing.meter_events"  # identifier -> meter event object
USAGE = "billing.meter_usage"    # "meter id|customer id" -> [[timestamp, value, identifier], ...]
TIERS = "price.tiers"            # price id -> tiers as Stripe shows them (expand[]=tiers)

DAY = 86400
DEDUPE_SECONDS = DAY
PAST_LIMIT = 35 * DAY
FUTURE_LIMIT = 300
FORMULAS = ("sum", "count", "last")


def meter_by_event_name(emu, event_name: str) -> dict | None:
    return next((m for m in emu.store.all("billing.meter") if m["event_name"] == event_name), None)


# -- meters -----------------------------------------------------------------------------------
def meter_create(emu, params):
    allow(params, {"display_name", "event_name", "default_aggregation", "customer_mapping", "value_settings",
                   "event_time_window"})
    required(params, "display_name", "event_name")
    aggregation = params.get("default_aggregation")
    if not isinstance(aggregation, dict) or not aggregation.get("formula"):
        raise StripeError(400, "Missing required param: default_aggregation[formula].", code="parameter_missing",
                          param="default_aggregation[formula]")
    allow(aggregation, {"formula"})
    if aggregation["formula"] not in FORMULAS:
        raise StripeError(400, "Invalid default_aggregation[formula]: must be one of sum, count, or last",
                          param="default_aggregation[formula]")
    if meter_by_event_name(emu, params["event_name"]):
        raise StripeError(400, f"A meter with event_name `{params['event_name']}` already exists.",
                          param="event_name")
    mapping = params.get("customer_mapping") or {}
    if not isinstance(mapping, dict):
        raise StripeError(400, "Invalid customer_mapping", param="customer_mapping")
    allow(mapping, {"event_payload_key", "type"})
    if mapping and (mapping.get("type") != "by_id" or not mapping.get("event_payload_key")):
        raise StripeError(400, "customer_mapping needs type=by_id and an event_payload_key.",
                          param="customer_mapping")
    value_settings = params.get("value_settings") or {}
    if not isinstance(value_settings, dict):
        raise StripeError(400, "Invalid value_settings", param="value_settings")
    allow(value_settings, {"event_payload_key"})
    window = params.get("event_time_window") or None
    if window not in (None, "day", "hour"):
        raise StripeError(400, "Invalid event_time_window: must be one of day or hour", param="event_time_window")
    now = emu.now()
    meter = shapes.example("billing.meter")
    meter.update(id=shapes.new_id("mtr_test_", 32), created=now, updated=now, livemode=False,
                 display_name=params["display_name"], event_name=params["event_name"],
                 event_time_window=window, status="active",
                 status_transitions={"deactivated_at": None},
                 default_aggregation={"formula": aggregation["formula"]},
                 customer_mapping={"event_payload_key": mapping.get("event_payload_key") or "stripe_customer_id",
                                   "type": "by_id"},
                 value_settings={"event_payload_key": value_settings.get("event_payload_key") or "value"})
    emu.store.put(meter)
    emu.emit("billing.meter.created", meter)
    return meter


def meter_update(emu, params, id):
    allow(params, {"display_name"})
    meter = emu.store.get("billing.meter", id)
    if params.get("display_name") and params["display_name"] != meter["display_name"]:
        previous = {"display_name": meter["display_name"], "updated": meter["updated"]}
        meter.update(display_name=params["display_name"], updated=emu.now())
        emu.emit("billing.meter.updated", meter, previous)
    return meter


def meter_deactivate(emu, params, id):
    allow(params, set())
    meter = emu.store.get("billing.meter", id)
    if meter["status"] == "inactive":
        raise StripeError(400, f"Meter {id} is already inactive.")
    now = emu.now()
    meter.update(status="inactive", updated=now, status_transitions={"deactivated_at": now})
    emu.emit("billing.meter.deactivated", meter)
    return meter


def meter_reactivate(emu, params, id):
    allow(params, set())
    meter = emu.store.get("billing.meter", id)
    if meter["status"] == "active":
        raise StripeError(400, f"Meter {id} is already active.")
    meter.update(status="active", updated=emu.now(), status_transitions={"deactivated_at": None})
    emu.emit("billing.meter.reactivated", meter)
    return meter


def meter_retrieve(emu, params, id):
    return emu.store.get("billing.meter", id)


def meter_list(emu, params):
    items = emu.store.newest_first("billing.meter")
    if "status" in params:
        status = params.pop("status")
        if status not in ("active", "inactive"):
            raise StripeError(400, "Invalid status: must be one of active or inactive", param="status")
        items = [m for m in items if m["status"] == status]
    return emu.store.page(created_filter(items, params.get("created")), params, "/v1/billing/meters")


# -- meter events -----------------------------------------------------------------------------
def decimal_value(raw, param: str) -> Decimal:
    try:
        value = Decimal(str(raw))
    except InvalidOperation:
        value = None
    if value is None or not value.is_finite() or value < 0:
        raise StripeError(400, f"The value `{raw}` for {param} is not a valid non-negative number.",
                          code="meter_event_invalid_value", param=param)
    return value


def meter_event_create(emu, params):
    allow(params, {"event_name", "payload", "identifier", "timestamp"})
    required(params, "event_name")
    payload = params.get("payload")
    if not isinstance(payload, dict) or not payload:
        raise StripeError(400, "Missing required param: payload.", code="parameter_missing", param="payload")
    meter = meter_by_event_name(emu, params["event_name"])
    if meter is None:
        raise StripeError(400, f"No active meter was found for event_name `{params['event_name']}`.",
                          code="no_meter", param="event_name")
    if meter["status"] != "active":
        raise StripeError(400, f"The meter for event_name `{params['event_name']}` is inactive and does not "
                               "accept events.", code="archived_meter", param="event_name")
    customer_key = meter["customer_mapping"]["event_payload_key"]
    value_key = meter["value_settings"]["event_payload_key"]
    customer_id = payload.get(customer_key)
    if not customer_id:
        raise StripeError(400, f"Missing required param: payload[{customer_key}].",
                          code="meter_event_no_customer_defined", param=f"payload[{customer_key}]")
    customer = emu.store.objects.get(customer_id)
    if customer is None or customer.get("object") != "customer" or customer.get("deleted"):
        raise StripeError(400, f"No such customer: '{customer_id}'", code="meter_event_customer_not_found",
                          param=f"payload[{customer_key}]")
    if meter["default_aggregation"]["formula"] == "count":
        value = decimal_value(payload.get(value_key, "1"), f"payload[{value_key}]")
    else:
        if payload.get(value_key) in (None, ""):
            raise StripeError(400, f"Missing required param: payload[{value_key}].",
                              code="meter_event_value_not_found", param=f"payload[{value_key}]")
        value = decimal_value(payload[value_key], f"payload[{value_key}]")
    now = emu.now()
    timestamp = as_int(params["timestamp"], "timestamp") if params.get("timestamp") not in (None, "") else now
    if timestamp < now - PAST_LIMIT:
        raise StripeError(400, "The timestamp must be within the past 35 calendar days.",
                          code="timestamp_too_far_in_past", param="timestamp")
    if timestamp > now + FUTURE_LIMIT:
        raise StripeError(400, "The timestamp must be no more than 5 minutes in the future.",
                          code="timestamp_in_future", param="timestamp")
    identifier = params.get("identifier") or shapes.new_id("mevt_", 24)
    if len(identifier) > 100:
        raise StripeError(400, "Invalid identifier: must be at most 100 characters", param="identifier")
    events = emu.store.table(EVENTS)
    earlier = events.get(identifier)
    if earlier is not None and now - earlier["created"] < DEDUPE_SECONDS:
        raise StripeError(400, f"An event already exists with identifier `{identifier}`. Identifiers must be "
                               "unique within a rolling 24 hour period.", code="duplicate_meter_event",
                          param="identifier")
    event = shapes.example("billing.meter_event")
    event.update(created=now, event_name=params["event_name"], identifier=identifier, livemode=False,
                 payload={str(k): str(v) for k, v in payload.items()}, timestamp=timestamp)
    events[identifier] = event
    emu.store.table(USAGE).setdefault(f"{meter['id']}|{customer_id}", []).append(
        [timestamp, str(value), identifier])
    return event


# -- aggregation --------------------------------------------------------------------------------
def aggregate(emu, meter: dict, customer_id: str, start: int, end: int) -> Decimal:
    """The meter's formula over the customer's events with start <= timestamp < end."""
    rows = [r for r in emu.store.table(USAGE).get(f"{meter['id']}|{customer_id}", []) if start <= r[0] < end]
    formula = meter["default_aggregation"]["formula"]
    if formula == "count":
        return Decimal(len(rows))
    if formula == "last":
        return Decimal(max(rows, key=lambda r: r[0])[1]) if rows else Decimal(0)
    return sum((Decimal(r[1]) for r in rows), Decimal(0))


def as_number(value: Decimal):
    return int(value) if value == value.to_integral_value() else float(value)


def event_summaries(emu, params, id):
    allow(params, {"customer", "start_time", "end_time", "value_grouping_window", "limit", "starting_after",
                   "ending_before"})
    meter = emu.store.get("billing.meter", id)
    required(params, "customer", "start_time", "end_time")
    customer_id = emu.store.get("customer", params.pop("customer"), "customer")["id"]
    start, end = as_int(params.pop("start_time"), "start_time"), as_int(params.pop("end_time"), "end_time")
    if end <= start:
        raise StripeError(400, "The end_time must be after the start_time.", param="end_time")
    window = params.pop("value_grouping_window", None) or None
    if window not in (None, "hour", "day"):
        raise StripeError(400, "Invalid value_grouping_window: must be one of day or hour",
                          param="value_grouping_window")
    step = {None: None, "hour": 3600, "day": DAY}[window]
    for name, moment in (("start_time", start), ("end_time", end)):
        if moment % (step or 60):
            unit = {None: "minute", 3600: "hour", DAY: "day"}[step]
            raise StripeError(400, f"The {name} must be aligned to a {unit} boundary (UTC).", param=name)
    bounds = [(start, end)] if step is None else [(s, min(s + step, end)) for s in range(start, end, step)]
    items = []
    for s, e in reversed(bounds):  # newest first
        summary = shapes.example("billing.meter_event_summary")
        digest = hashlib.sha256(f"{meter['id']}|{customer_id}|{s}|{e}".encode()).hexdigest()[:24]
        summary.update(id=f"mtrusg_{digest}", meter=meter["id"], start_time=s, end_time=e, livemode=False,
                       aggregated_value=as_number(aggregate(emu, meter, customer_id, s, e)))
        items.append(summary)
    return emu.store.page(items, params, f"/v1/billing/meters/{meter['id']}/event_summaries")


# -- metered and tiered prices ---------------------------------------------------------------------
def price_usage_fields(emu, params: dict) -> dict:
    """Validate a price's `billing_scheme`, `tiers`, `tiers_mode`, `recurring[usage_type]` and
    `recurring[meter]`; answers the fields to set on the price (and `tiers` for the side table)."""
    recurring = params.get("recurring") if isinstance(params.get("recurring"), dict) else {}
    scheme = params.get("billing_scheme") or "per_unit"
    if scheme not in ("per_unit", "tiered"):
        raise StripeError(400, "Invalid billing_scheme: must be one of per_unit or tiered", param="billing_scheme")
    usage_type = recurring.get("usage_type") or "licensed"
    if usage_type not in ("licensed", "metered"):
        raise StripeError(400, "Invalid recurring[usage_type]: must be one of licensed or metered",
                          param="recurring[usage_type]")
    meter_id = recurring.get("meter") or None
    if usage_type == "metered":
        if not meter_id:
            raise StripeError(400, "Missing required param: recurring[meter]. Metered prices must be backed "
                                   "by a meter.", code="parameter_missing", param="recurring[meter]")
        meter = emu.store.get("billing.meter", meter_id, "recurring[meter]")
        if meter["status"] != "active":
            raise StripeError(400, f"You can't attach the inactive meter {meter_id} to a price.",
                              param="recurring[meter]")
    elif meter_id:
        raise StripeError(400, "recurring[meter] can only be set when recurring[usage_type] is metered.",
                          param="recurring[meter]")
    fields = {"billing_scheme": scheme, "tiers_mode": None, "usage_type": usage_type, "meter": meter_id,
              "tiers": None}
    if scheme == "tiered":
        if params.get("tiers_mode") not in ("graduated", "volume"):
            raise StripeError(400, "Missing required param: tiers_mode (graduated or volume).",
                              code="parameter_missing", param="tiers_mode")
        if params.get("unit_amount") not in (None, ""):
            raise StripeError(400, "You cannot set unit_amount on a tiered price.", param="unit_amount")
        fields.update(tiers_mode=params["tiers_mode"], tiers=parse_tiers(params.get("tiers")))
    elif params.get("tiers") or params.get("tiers_mode"):
        raise StripeError(400, "tiers and tiers_mode need billing_scheme=tiered.",
                          param="tiers" if params.get("tiers") else "tiers_mode")
    return fields


def apply_usage_fields(emu, price: dict, usage: dict):
    """Set what price_usage_fields validated on a new price (tiers go in a side table: expand[]=tiers)."""
    price.update(billing_scheme=usage["billing_scheme"], tiers_mode=usage["tiers_mode"])
    if usage["tiers"]:
        price.update(unit_amount=None, unit_amount_decimal=None)
        emu.store.table(TIERS)[price["id"]] = usage["tiers"]
    if price.get("recurring"):
        price["recurring"].update(usage_type=usage["usage_type"], meter=usage["meter"])


def parse_tiers(value) -> list[dict]:
    tiers = as_list(value)
    if not tiers:
        raise StripeError(400, "Missing required param: tiers.", code="parameter_missing", param="tiers")
    parsed, last_bound = [], 0
    for index, tier in enumerate(tiers):
        where = f"tiers[{index}]"
        if not isinstance(tier, dict):
            raise StripeError(400, f"Invalid {where}", param=where)
        allow(tier, {"up_to", "unit_amount", "unit_amount_decimal", "flat_amount", "flat_amount_decimal"})
        if tier.get("up_to") in (None, ""):
            raise StripeError(400, f"Missing required param: {where}[up_to].", code="parameter_missing",
                              param=f"{where}[up_to]")
        last = index == len(tiers) - 1
        if tier["up_to"] == "inf":
            if not last:
                raise StripeError(400, "Only the last tier can have up_to=inf.", param=f"{where}[up_to]")
            up_to = None
        else:
            up_to = as_int(tier["up_to"], f"{where}[up_to]")
            if up_to <= last_bound:
                raise StripeError(400, "Tiers must be in increasing order of up_to.", param=f"{where}[up_to]")
            if last:
                raise StripeError(400, "The last tier must have up_to=inf.", param=f"{where}[up_to]")
            last_bound = up_to
        unit = amount_field(tier, "unit_amount", where)
        flat = amount_field(tier, "flat_amount", where)
        parsed.append({"flat_amount": int(flat) if flat is not None and flat == flat.to_integral_value() else None,
                       "flat_amount_decimal": str(flat) if flat is not None else None,
                       "unit_amount": int(unit) if unit is not None and unit == unit.to_integral_value() else None,
                       "unit_amount_decimal": str(unit) if unit is not None else None,
                       "up_to": up_to})
    return parsed


def amount_field(tier: dict, name: str, where: str) -> Decimal | None:
    raw = tier.get(name) if tier.get(name) not in (None, "") else tier.get(f"{name}_decimal")
    if raw in (None, ""):
        return None
    value = decimal_value(raw, f"{where}[{name}]")
    return value


def tiered_amount(tiers: list[dict], mode: str, quantity: Decimal) -> int:
    """What `quantity` costs under `tiers`: graduated prices each unit at the tier it falls in (plus each
    reached tier's flat amount); volume prices every unit at the tier the total falls in."""
    def unit(tier):
        return Decimal(tier["unit_amount_decimal"] or 0)

    def flat(tier):
        return Decimal(tier["flat_amount_decimal"] or 0)
    if mode == "volume":
        tier = next(t for t in tiers if t["up_to"] is None or quantity <= t["up_to"])
        return round_half_up(quantity * unit(tier) + flat(tier))
    total, lower = Decimal(0), 0
    for index, tier in enumerate(tiers):
        if index and quantity <= lower:  # a tier (and its flat amount) counts once a unit reaches it
            break
        upper = tier["up_to"]
        units = (quantity if upper is None else min(quantity, Decimal(upper))) - lower
        total += max(units, Decimal(0)) * unit(tier) + flat(tier)
        if upper is None:
            break
        lower = upper
    return round_half_up(total)


def price_tiers(emu, price: dict):
    return emu.store.table(TIERS).get(price["id"])


def register(api):
    api.add("POST", "/v1/billing/meters", meter_create)
    api.add("GET", "/v1/billing/meters", meter_list)
    api.add("GET", "/v1/billing/meters/{id}", meter_retrieve)
    api.add("POST", "/v1/billing/meters/{id}", meter_update)
    api.add("POST", "/v1/billing/meters/{id}/deactivate", meter_deactivate)
    api.add("POST", "/v1/billing/meters/{id}/reactivate", meter_reactivate)
    api.add("GET", "/v1/billing/meters/{id}/event_summaries", event_summaries)
    api.add("POST", "/v1/billing/meter_events", meter_event_create)
    api.virtual("price", "tiers", price_tiers)
