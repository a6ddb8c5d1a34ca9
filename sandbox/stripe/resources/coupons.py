"""Coupons, promotion codes, discounts, and how discounts reduce invoice lines (as Stripe computes them).

Other families call: `resolve_discounts(emu, params, ...)` to validate `coupon` / `promotion_code` /
`discounts[]` parameters into discount sources, `create_discounts(emu, sources, ...)` to make the discount
objects, `apply_customer_discount` for a customer's coupon, `validate_coupon` for one coupon id.
"""
from __future__ import annotations

import copy
from decimal import Decimal

from .. import shapes
from ..errors import StripeError, allow, metadata as merge_metadata, missing
from ..params import as_bool, as_int, as_list
from ..store import created_filter
from .tax_rates import number_json, percentage, round_half_up

CUSTOMER_DISCOUNT = "customer.discount"  # store table: customer id -> discount id
DISCOUNT_USES = "discount.uses"          # discount id -> invoices it reduced

COUPON_FIELDS = {"id", "percent_off", "amount_off", "currency", "duration", "duration_in_months",
                 "max_redemptions", "redeem_by", "name", "metadata", "applies_to", "currency_options"}
PROMO_FIELDS = {"promotion", "code", "active", "customer", "expires_at", "max_redemptions", "restrictions",
                "metadata"}


# -- coupons ----------------------------------------------------------------------------------
def coupon_create(emu, params):
    allow(params, COUPON_FIELDS)
    has_pct, has_amount = params.get("percent_off") not in (None, ""), params.get("amount_off") not in (None, "")
    if has_pct == has_amount:
        raise StripeError(400, "You must pass exactly one of percent_off or amount_off.",
                          param="amount_off" if has_amount else "percent_off")
    coupon = shapes.example("coupon")
    coupon_id = params.get("id") or shapes.new_id("", 8)
    if coupon_id in emu.store.objects:
        raise StripeError(400, "Coupon already exists.", code="resource_already_exists", param="id")
    duration = params.get("duration") or "once"
    if duration not in ("once", "repeating", "forever"):
        raise StripeError(400, "Invalid duration: must be one of forever, once, or repeating", param="duration")
    months = None
    if duration == "repeating":
        if not params.get("duration_in_months"):
            raise StripeError(400, "Missing required param: duration_in_months.", code="parameter_missing",
                              param="duration_in_months")
        months = as_int(params["duration_in_months"], "duration_in_months")
        if months < 1:
            raise StripeError(400, "Invalid positive integer", param="duration_in_months")
    elif params.get("duration_in_months"):
        raise StripeError(400, "duration_in_months can only be set when duration is repeating.",
                          param="duration_in_months")
    pct = amount_off = currency = None
    if has_pct:
        pct = percentage(params["percent_off"], "percent_off")
        if pct <= 0:
            raise StripeError(400, "Invalid percent_off: must be greater than 0", param="percent_off")
        pct = number_json(pct)
    else:
        amount_off = as_int(params["amount_off"], "amount_off")
        if amount_off < 1:
            raise StripeError(400, "Invalid positive integer", param="amount_off")
        if not params.get("currency"):
            raise StripeError(400, "You must pass a currency when creating an amount_off coupon.",
                              code="parameter_missing", param="currency")
        currency = params["currency"].lower()
    max_redemptions = as_int(params["max_redemptions"], "max_redemptions") if params.get("max_redemptions") else None
    redeem_by = as_int(params["redeem_by"], "redeem_by") if params.get("redeem_by") else None
    if redeem_by is not None and redeem_by <= emu.now():
        raise StripeError(400, "Invalid redeem_by: must be in the future", param="redeem_by")
    applies_to = params.get("applies_to")
    if applies_to is not None:
        if not isinstance(applies_to, dict) or set(applies_to) - {"products"}:
            raise StripeError(400, "Invalid applies_to: only products is accepted", param="applies_to")
        products = [p for p in as_list(applies_to.get("products")) if p]
        for index, product_id in enumerate(products):
            emu.store.get("product", product_id, f"applies_to[products][{index}]")
        applies_to = {"products": products}
    coupon.update(id=coupon_id, created=emu.now(), percent_off=pct, amount_off=amount_off, currency=currency,
                  duration=duration, duration_in_months=months, max_redemptions=max_redemptions,
                  redeem_by=redeem_by, name=params.get("name") or None, times_redeemed=0, valid=True,
                  livemode=False, metadata=merge_metadata({}, params.get("metadata")))
    if applies_to:
        coupon["applies_to"] = applies_to
    emu.store.put(coupon)
    emu.emit("coupon.created", coupon)
    return coupon


def coupon_update(emu, params, id):
    allow(params, {"name", "metadata", "currency_options"})
    coupon = emu.store.get("coupon", id)
    previous = {}
    if "name" in params and (params["name"] or None) != coupon["name"]:
        previous["name"] = coupon["name"]
        coupon["name"] = params["name"] or None
    if "metadata" in params:
        merged = merge_metadata(coupon["metadata"], params["metadata"])
        if merged != coupon["metadata"]:
            previous["metadata"] = coupon["metadata"]
            coupon["metadata"] = merged
    if previous:
        emu.emit("coupon.updated", coupon, previous)
    return coupon


def coupon_delete(emu, params, id):
    coupon = emu.store.get("coupon", id)
    coupon["valid"] = False
    emu.emit("coupon.deleted", coupon)
    # Discounts already made from it go on applying, as on Stripe; the coupon itself is gone.
    coupon["deleted"] = True
    return {"id": id, "object": "coupon", "deleted": True}


def coupon_retrieve(emu, params, id):
    return emu.store.get("coupon", id)


def coupon_list(emu, params):
    items = emu.store.newest_first("coupon")
    return emu.store.page(created_filter(items, params.get("created")), params, "/v1/coupons")


def refresh_validity(emu, coupon: dict):
    coupon["valid"] = not coupon.get("deleted") and not (
        (coupon["max_redemptions"] is not None and coupon["times_redeemed"] >= coupon["max_redemptions"])
        or (coupon["redeem_by"] is not None and emu.now() > coupon["redeem_by"]))


def validate_coupon(emu, coupon_id, param: str = "coupon", currency: str | None = None) -> dict:
    """The coupon, or Stripe's error: unknown (`No such coupon`), used up or expired, wrong currency."""
    coupon = emu.store.objects.get(coupon_id) if isinstance(coupon_id, str) else None
    if coupon is None or coupon.get("object") != "coupon" or coupon.get("deleted"):
        raise missing("coupon", str(coupon_id), param)
    refresh_validity(emu, coupon)
    if not coupon["valid"]:
        raise StripeError(400, f"Coupon {coupon_id} is no longer valid.", code="coupon_expired", param=param)
    if currency and coupon["amount_off"] is not None and coupon["currency"] != currency:
        raise StripeError(400, f"The coupon {coupon_id} is in {coupon['currency']} and cannot apply to a "
                               f"{currency} total.", param=param)
    return coupon


# -- promotion codes --------------------------------------------------------------------------
def promotion_code_create(emu, params):
    allow(params, PROMO_FIELDS)
    promotion = params.get("promotion")
    if not isinstance(promotion, dict) or not promotion.get("coupon"):
        raise StripeError(400, "Missing required param: promotion[coupon].", code="parameter_missing",
                          param="promotion[coupon]")
    if promotion.get("type", "coupon") != "coupon" or set(promotion) - {"type", "coupon"}:
        raise StripeError(400, "Invalid promotion: type must be coupon", param="promotion[type]")
    coupon = validate_coupon(emu, promotion["coupon"], "promotion[coupon]")
    code = params.get("code") or shapes.new_id("", 8).upper()
    if any(p["code"].lower() == code.lower() and p["active"] for p in emu.store.all("promotion_code")):
        raise StripeError(400, f"An active promotion code with `code: {code}` already exists.", param="code")
    customer = params.get("customer") or None
    if customer:
        emu.store.get("customer", customer, "customer")
    restrictions = params.get("restrictions") or {}
    if not isinstance(restrictions, dict) or set(restrictions) - {"first_time_transaction", "minimum_amount",
                                                                   "minimum_amount_currency"}:
        raise StripeError(400, "Invalid restrictions", param="restrictions")
    minimum = as_int(restrictions["minimum_amount"], "restrictions[minimum_amount]") \
        if restrictions.get("minimum_amount") else None
    if minimum is not None and not restrictions.get("minimum_amount_currency"):
        raise StripeError(400, "Missing required param: restrictions[minimum_amount_currency].",
                          code="parameter_missing", param="restrictions[minimum_amount_currency]")
    promo = shapes.example("promotion_code")
    promo.update(id=shapes.new_id("promo_"), code=code, created=emu.now(), customer=customer,
                 active=as_bool(params.get("active", "true"), "active"),
                 expires_at=as_int(params["expires_at"], "expires_at") if params.get("expires_at") else None,
                 max_redemptions=as_int(params["max_redemptions"], "max_redemptions")
                 if params.get("max_redemptions") else None,
                 times_redeemed=0, livemode=False, metadata=merge_metadata({}, params.get("metadata")),
                 promotion={"coupon": coupon["id"], "type": "coupon"}, customer_account=None)
    promo["restrictions"] = {
        "first_time_transaction": as_bool(restrictions.get("first_time_transaction", "false"),
                                          "restrictions[first_time_transaction]"),
        "minimum_amount": minimum,
        "minimum_amount_currency": (restrictions.get("minimum_amount_currency") or "").lower() or None}
    emu.store.put(promo)
    emu.emit("promotion_code.created", promo)
    return promo


def promotion_code_update(emu, params, id):
    allow(params, {"active", "metadata", "restrictions"})
    promo = emu.store.get("promotion_code", id)
    previous = {}
    if "active" in params:
        active = as_bool(params["active"], "active")
        if active != promo["active"]:
            previous["active"] = promo["active"]
            promo["active"] = active
    if "metadata" in params:
        merged = merge_metadata(promo["metadata"], params["metadata"])
        if merged != promo["metadata"]:
            previous["metadata"] = promo["metadata"]
            promo["metadata"] = merged
    if previous:
        emu.emit("promotion_code.updated", promo, previous)
    return promo


def promotion_code_retrieve(emu, params, id):
    return emu.store.get("promotion_code", id)


def promotion_code_list(emu, params):
    items = emu.store.newest_first("promotion_code")
    if "active" in params:
        active = as_bool(params.pop("active"), "active")
        items = [p for p in items if p["active"] == active]
    if "code" in params:
        code = params.pop("code")
        items = [p for p in items if p["code"] == code]
    if "coupon" in params:
        coupon = params.pop("coupon")
        items = [p for p in items if p["promotion"]["coupon"] == coupon]
    if "customer" in params:
        customer = params.pop("customer")
        items = [p for p in items if p["customer"] == customer]
    return emu.store.page(created_filter(items, params.get("created")), params, "/v1/promotion_codes")


def validate_promotion_code(emu, promo_id, param: str, customer_id: str | None = None) -> dict:
    promo = emu.store.get("promotion_code", promo_id, param)
    expired = promo["expires_at"] is not None and emu.now() > promo["expires_at"]
    used_up = promo["max_redemptions"] is not None and promo["times_redeemed"] >= promo["max_redemptions"]
    if not promo["active"] or expired or used_up:
        raise StripeError(400, f"This promotion code cannot be redeemed because it is inactive, expired or "
                               f"has reached its maximum redemptions: {promo['code']}.", param=param)
    if promo["customer"] and customer_id and promo["customer"] != customer_id:
        raise StripeError(400, "This promotion code cannot be redeemed by this customer.", param=param)
    if promo["restrictions"]["first_time_transaction"] and customer_id and any(
            i["customer"] == customer_id and i["status"] == "paid" and i["amount_paid"] > 0
            for i in emu.store.all("invoice")):
        raise StripeError(400, "This promotion code is only for first-time customers.", param=param)
    validate_coupon(emu, promo["promotion"]["coupon"], param)
    return promo


# -- discounts --------------------------------------------------------------------------------
def resolve_discounts(emu, params: dict, *, customer_id: str | None = None, currency: str | None = None,
                      prefix: str = "") -> list[dict]:
    """Validate `coupon`, `promotion_code` and `discounts[]` in `params` into discount sources
    `[{"coupon": id, "promotion_code": id | None, "discount": id | None}]` (nothing is created yet).
    `discounts[n][discount]` names an existing discount to keep."""
    sources = []
    if params.get("coupon"):
        sources.append({"coupon": validate_coupon(emu, params["coupon"], prefix + "coupon", currency)["id"],
                        "promotion_code": None, "discount": None})
    if params.get("promotion_code"):
        promo = validate_promotion_code(emu, params["promotion_code"], prefix + "promotion_code", customer_id)
        sources.append({"coupon": promo["promotion"]["coupon"], "promotion_code": promo["id"], "discount": None})
    given = params.get("discounts")
    if given not in (None, ""):
        if sources:
            raise StripeError(400, "You may only specify one of these parameters: coupon, discounts, "
                                   "promotion_code.", param=prefix + "discounts")
        for index, entry in enumerate(as_list(given)):
            where = f"{prefix}discounts[{index}]"
            if not isinstance(entry, dict) or len([k for k in entry if entry[k]]) != 1 or \
                    set(entry) - {"coupon", "promotion_code", "discount"}:
                raise StripeError(400, f"Invalid {where}: give one of coupon, promotion_code or discount.",
                                  param=where)
            if entry.get("coupon"):
                sources.append({"coupon": validate_coupon(emu, entry["coupon"], f"{where}[coupon]", currency)["id"],
                                "promotion_code": None, "discount": None})
            elif entry.get("promotion_code"):
                promo = validate_promotion_code(emu, entry["promotion_code"], f"{where}[promotion_code]",
                                                customer_id)
                sources.append({"coupon": promo["promotion"]["coupon"], "promotion_code": promo["id"],
                                "discount": None})
            else:
                discount = emu.store.get("discount", entry["discount"], f"{where}[discount]")
                sources.append({"coupon": discount["source"]["coupon"],
                                "promotion_code": discount["promotion_code"], "discount": discount["id"]})
    coupons = [s["coupon"] for s in sources]
    if len(coupons) != len(set(coupons)):
        raise StripeError(400, "The same coupon cannot be applied twice.", param=prefix + "discounts")
    return sources


def new_discount(emu, source: dict, *, customer=None, subscription=None, invoice=None, invoice_item=None,
                 subscription_item=None, checkout_session=None) -> dict:
    """A discount object for one source; counts the coupon's and the promotion code's redemption."""
    coupon = emu.store.objects[source["coupon"]]
    now = emu.now()
    discount = shapes.example("discount")
    end = shapes.add_months(now, coupon["duration_in_months"]) if coupon["duration"] == "repeating" else None
    discount.update(id=shapes.new_id("di_"), customer=customer, subscription=subscription, invoice=invoice,
                    invoice_item=invoice_item, subscription_item=subscription_item,
                    checkout_session=checkout_session, promotion_code=source["promotion_code"], start=now,
                    end=end, customer_account=None)
    discount["source"] = {"coupon": coupon["id"], "type": "coupon"}
    coupon["times_redeemed"] += 1
    refresh_validity(emu, coupon)
    if source["promotion_code"]:
        emu.store.objects[source["promotion_code"]]["times_redeemed"] += 1
    return emu.store.put(discount)


def create_discounts(emu, sources: list[dict], **owner) -> list[str]:
    """Discount ids for `sources` (from resolve_discounts): existing ones kept, the others created."""
    return [s["discount"] or new_discount(emu, s, **owner)["id"] for s in sources]


def announce_discounts(emu, before: list, after: list):
    """The customer.discount.* events for an owner's discounts going from `before` to `after` (ids), as
    Stripe emits them when a subscription gains, changes or loses a discount: one replaced by another is
    `updated` (the new discount, the old one's `source` in previous_attributes, as for a customer's coupon),
    a new one `created`, one gone `deleted`. The objects carry the current API's shape: the coupon under
    `source.coupon`, by id (Stripe expands it in no event)."""
    objects = emu.store.objects
    removed = [d for d in before if isinstance(d, str) and d not in after and d in objects]
    added = [d for d in after if isinstance(d, str) and d not in before and d in objects]
    for old_id, new_id in zip(removed, added):
        emu.emit("customer.discount.updated", objects[new_id], {"source": copy.deepcopy(objects[old_id]["source"])})
    for old_id in removed[len(added):]:
        emu.emit("customer.discount.deleted", objects[old_id])
    for new_id in added[len(removed):]:
        emu.emit("customer.discount.created", objects[new_id])


def subscription_discount_delete(emu, params, id):
    """DELETE /v1/subscriptions/{id}/discount: the subscription's discounts removed (customer.discount.deleted
    for each, then customer.subscription.updated); answers the (first) deleted discount."""
    sub = emu.store.get("subscription", id)
    gone = [d for d in sub.get("discounts") or [] if isinstance(d, str) and d in emu.store.objects]
    if not gone:
        raise StripeError(404, f"No active discount for subscription: '{id}'", code="resource_missing")
    from .test_clocks import on_customer_clock  # noqa: PLC0415 (the subscriptions family imports this one)
    previous = list(sub["discounts"])
    sub["discounts"] = []
    with on_customer_clock(emu, emu.store.objects[sub["customer"]]):
        announce_discounts(emu, previous, [])
        emu.emit("customer.subscription.updated", sub, {"discounts": previous})
    return {**copy.deepcopy(emu.store.objects[gone[0]]), "deleted": True}


def apply_customer_discount(emu, customer: dict, source: dict) -> dict:
    """Give the customer a discount (replacing any): `customer.discount.created` or `.updated`."""
    table = emu.store.table(CUSTOMER_DISCOUNT)
    old = emu.store.objects.get(table.get(customer["id"]))
    discount = new_discount(emu, source, customer=customer["id"])
    table[customer["id"]] = discount["id"]
    if old:
        old["deleted"] = True
        emu.emit("customer.discount.updated", discount, {"source": copy.deepcopy(old["source"])})
    else:
        emu.emit("customer.discount.created", discount)
    return discount


def remove_customer_discount(emu, customer_id: str) -> dict | None:
    discount_id = emu.store.table(CUSTOMER_DISCOUNT).pop(customer_id, None)
    discount = emu.store.objects.get(discount_id)
    if discount is None:
        return None
    emu.emit("customer.discount.deleted", discount)
    discount["deleted"] = True
    return discount


def customer_discount(emu, customer_id: str) -> dict | None:
    return emu.store.objects.get(emu.store.table(CUSTOMER_DISCOUNT).get(customer_id))


def customer_discount_delete(emu, params, id):
    emu.store.get("customer", id)
    discount = remove_customer_discount(emu, id)
    if discount is None:
        raise StripeError(404, f"No active discount for customer: '{id}'", code="resource_missing")
    return {**copy.deepcopy(discount), "deleted": True}


def discount_active(emu, discount: dict, at: int) -> bool:
    coupon = emu.store.objects.get(discount["source"]["coupon"])
    if coupon is None:
        return False
    if coupon["duration"] == "once":
        return emu.store.table(DISCOUNT_USES).get(discount["id"], 0) == 0
    return discount["end"] is None or at < discount["end"]


def count_use(emu, discount_ids: list[str]):
    uses = emu.store.table(DISCOUNT_USES)
    for discount_id in discount_ids:
        uses[discount_id] = uses.get(discount_id, 0) + 1


# -- discount arithmetic ------------------------------------------------------------------------
def allocate(total: int, weights: list[int]) -> list[int]:
    """Split `total` across `weights` proportionally in whole minor units (largest remainder)."""
    whole = sum(weights)
    if whole <= 0:
        return [0] * len(weights)
    shares = [total * w // whole for w in weights]
    remainders = sorted(range(len(weights)), key=lambda i: (-(total * weights[i] % whole), i))
    for i in remainders[:total - sum(shares)]:
        shares[i] += 1
    return shares


def discount_lines(emu, lines: list[dict], discount_ids: list[str], currency: str,
                   line_discounts: dict[str, list[str]] | None = None) -> None:
    """Set each line's `discount_amounts`: line-level discounts first, then the invoice's, each on what
    earlier discounts left. Percent off is rounded per line; amount off is split across the eligible lines
    in proportion to what is left of them (largest remainder), never more than is left."""
    line_discounts = line_discounts or {}
    left = {line["id"]: line["amount"] for line in lines}
    for line in lines:
        line["discount_amounts"] = []
        for discount_id in line_discounts.get(line["id"], []):
            apply_one(emu, [line], discount_id, currency, left)
    for discount_id in discount_ids:
        apply_one(emu, [line for line in lines if line.get("discountable", True)], discount_id, currency, left)


def apply_one(emu, lines, discount_id, currency, left):
    discount = emu.store.objects[discount_id]
    coupon = emu.store.objects[discount["source"]["coupon"]]
    products = (coupon.get("applies_to") or {}).get("products")
    eligible = [line for line in lines if not products
                or ((line.get("pricing") or {}).get("price_details") or {}).get("product") in products]
    if coupon["percent_off"] is not None:
        rate = Decimal(str(coupon["percent_off"]))
        amounts = [min(left[line["id"]], round_half_up(Decimal(max(left[line["id"]], 0)) * rate / 100))
                   for line in eligible]
    elif coupon["currency"] == currency:
        weights = [max(left[line["id"]], 0) for line in eligible]
        amounts = allocate(min(coupon["amount_off"], sum(weights)), weights)
    else:
        amounts = [0] * len(eligible)
    for line, amount in zip(eligible, amounts):
        left[line["id"]] -= amount
        line["discount_amounts"].append({"amount": amount, "discount": discount_id})


def register(api):
    api.add("POST", "/v1/coupons", coupon_create)
    api.add("GET", "/v1/coupons", coupon_list)
    api.add("GET", "/v1/coupons/{id}", coupon_retrieve)
    api.add("POST", "/v1/coupons/{id}", coupon_update)
    api.add("DELETE", "/v1/coupons/{id}", coupon_delete)
    api.add("POST", "/v1/promotion_codes", promotion_code_create)
    api.add("GET", "/v1/promotion_codes", promotion_code_list)
    api.add("GET", "/v1/promotion_codes/{id}", promotion_code_retrieve)
    api.add("POST", "/v1/promotion_codes/{id}", promotion_code_update)
    api.add("DELETE", "/v1/customers/{id}/discount", customer_discount_delete)
    api.add("DELETE", "/v1/subscriptions/{id}/discount", subscription_discount_delete)
