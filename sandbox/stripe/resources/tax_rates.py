"""Tax rates (exclusive and inclusive) and the tax a line owes under them."""
from __future__ import annotations

from decimal import ROUND_HALF_UP, Decimal, InvalidOperation

from .. import shapes
from ..errors import StripeError, allow, metadata as merge_metadata, required
from ..params import as_bool, as_list
from ..store import created_filter, filter_equal

FIELDS = {"display_name", "percentage", "inclusive", "active", "country", "description", "jurisdiction",
          "metadata", "state", "tax_type"}
UPDATE_FIELDS = {"display_name", "active", "country", "description", "jurisdiction", "metadata", "state",
                 "tax_type"}
TAX_TYPES = {"amusement_tax", "communications_tax", "gst", "hst", "igst", "jct", "lease_tax", "pst", "qst",
             "retail_delivery_fee", "rst", "sales_tax", "service_tax", "vat"}


def percentage(value, param: str) -> Decimal:
    try:
        number = Decimal(str(value))
    except InvalidOperation:
        raise StripeError(400, f"Invalid decimal: {value}", param=param) from None
    if not number.is_finite() or number < 0 or number > 100:
        raise StripeError(400, f"Invalid {param}: must be between 0 and 100", param=param)
    return number


def number_json(value: Decimal):
    """A decimal as Stripe writes it in JSON: an integer when whole (19), else a float (8.875)."""
    return int(value) if value == value.to_integral_value() else float(value)


def round_half_up(value: Decimal) -> int:
    return int(value.quantize(Decimal(1), rounding=ROUND_HALF_UP))


def tax_rate_create(emu, params):
    allow(params, FIELDS)
    required(params, "display_name", "inclusive", "percentage")
    pct = percentage(params["percentage"], "percentage")
    if params.get("tax_type") and params["tax_type"] not in TAX_TYPES:
        raise StripeError(400, f"Invalid tax_type: must be one of {', '.join(sorted(TAX_TYPES))}",
                          param="tax_type")
    rate = shapes.example("tax_rate")
    rate.update(id=shapes.new_id("txr_"), created=emu.now(), display_name=params["display_name"],
                percentage=number_json(pct), effective_percentage=number_json(pct),
                inclusive=as_bool(params["inclusive"], "inclusive"),
                active=as_bool(params.get("active", "true"), "active"), country=params.get("country") or None,
                description=params.get("description") or None, jurisdiction=params.get("jurisdiction") or None,
                state=params.get("state") or None, tax_type=params.get("tax_type") or None,
                jurisdiction_level=None, flat_amount=None, rate_type="percentage", livemode=False,
                metadata=merge_metadata({}, params.get("metadata")))
    emu.store.put(rate)
    emu.emit("tax_rate.created", rate)
    return rate


def tax_rate_update(emu, params, id):
    allow(params, UPDATE_FIELDS)
    rate = emu.store.get("tax_rate", id)
    previous = {}
    for key in UPDATE_FIELDS - {"metadata", "active"}:
        if key in params and rate[key] != (params[key] or None):
            previous[key] = rate[key]
            rate[key] = params[key] or None
    if "active" in params:
        active = as_bool(params["active"], "active")
        if active != rate["active"]:
            previous["active"] = rate["active"]
            rate["active"] = active
    if "metadata" in params:
        merged = merge_metadata(rate["metadata"], params["metadata"])
        if merged != rate["metadata"]:
            previous["metadata"] = rate["metadata"]
            rate["metadata"] = merged
    if previous:
        emu.emit("tax_rate.updated", rate, previous)
    return rate


def tax_rate_retrieve(emu, params, id):
    return emu.store.get("tax_rate", id)


def tax_rate_list(emu, params):
    items = emu.store.newest_first("tax_rate")
    if "active" in params:
        active = as_bool(params.pop("active"), "active")
        items = [r for r in items if r["active"] == active]
    if "inclusive" in params:
        inclusive = as_bool(params.pop("inclusive"), "inclusive")
        items = [r for r in items if r["inclusive"] == inclusive]
    items = filter_equal(items, params, ())
    return emu.store.page(created_filter(items, params.get("created")), params, "/v1/tax_rates")


def resolve_tax_rates(emu, value, param: str) -> list[str]:
    """Tax rate ids from a `tax_rates` / `default_tax_rates` parameter: each must exist and be active."""
    ids = [i for i in as_list(value) if i != ""]
    for index, rate_id in enumerate(ids):
        rate = emu.store.get("tax_rate", rate_id, f"{param}[{index}]")
        if not rate["active"]:
            raise StripeError(400, f"Tax rate {rate_id} is inactive and cannot be used.",
                              param=f"{param}[{index}]")
    if len({emu.store.objects[i]["inclusive"] for i in ids}) > 1:
        raise StripeError(400, "You cannot mix inclusive and exclusive tax rates on one line item.", param=param)
    return ids


def rate_objects(emu, value, param: str) -> list[dict]:
    """The tax rate objects Stripe shows in `default_tax_rates` / `tax_rates` (validated ids in)."""
    return [emu.store.objects[i] for i in resolve_tax_rates(emu, value, param)]


def rate_ids(rates) -> list[str]:
    """Ids from a `tax_rates` field holding objects (Stripe's shape) or ids."""
    return [r["id"] if isinstance(r, dict) else r for r in rates or []]


def line_taxes(emu, amount: int, rate_ids: list[str]) -> list[dict]:
    """The `taxes` of a line whose amount after discounts is `amount`.

    Exclusive rates: each adds round(amount * rate) on top. Inclusive rates: the amount already holds the
    tax; each rate's share is round(amount * rate / (1 + sum of rates)) and the taxable base is what is left.
    Rounding is half up, in minor units.
    """
    rates = [emu.store.objects[i] for i in rate_ids]
    if not rates:
        return []
    if rates[0]["inclusive"]:
        total_pct = sum(Decimal(str(r["percentage"])) for r in rates)
        shares = [round_half_up(Decimal(amount) * Decimal(str(r["percentage"])) / (100 + total_pct)) for r in rates]
        base = amount - sum(shares)
        return [tax_entry(rate, share, base, "inclusive") for rate, share in zip(rates, shares)]
    return [tax_entry(rate, round_half_up(Decimal(amount) * Decimal(str(rate["percentage"])) / 100), amount,
                      "exclusive") for rate in rates]


def tax_entry(rate: dict, amount: int, taxable: int, behavior: str) -> dict:
    return {"amount": amount, "tax_behavior": behavior, "tax_rate_details": {"tax_rate": rate["id"]},
            "taxability_reason": "standard_rated" if amount or taxable else "not_collecting",
            "taxable_amount": taxable, "type": "tax_rate_details"}


def register(api):
    api.add("POST", "/v1/tax_rates", tax_rate_create)
    api.add("GET", "/v1/tax_rates", tax_rate_list)
    api.add("GET", "/v1/tax_rates/{id}", tax_rate_retrieve)
    api.add("POST", "/v1/tax_rates/{id}", tax_rate_update)
