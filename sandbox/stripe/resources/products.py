"""Products and prices."""
from __future__ import annotations

from .. import shapes
from ..errors import StripeError, allow, metadata as merge_metadata
from ..params import as_bool, as_int, as_list
from ..store import created_filter
from . import meters


def product_create(emu, params):
    allow(params, {"name", "id", "description", "metadata", "active", "images", "url",
                   "statement_descriptor", "unit_label", "tax_code", "default_price_data"})
    if not params.get("name"):
        raise StripeError(400, "Missing required param: name.", code="parameter_missing", param="name")
    product_id = params.get("id") or shapes.new_id("prod_", 14)
    if product_id in emu.store.objects:
        raise StripeError(400, f"Product already exists.", code="resource_already_exists", param="id")
    product = shapes.product(product_id=product_id, name=params["name"], created=emu.now(),
                             description=params.get("description"),
                             metadata=merge_metadata({}, params.get("metadata")),
                             active=as_bool(params.get("active", "true"), "active"))
    emu.store.put(product)
    emu.emit("product.created", product)
    return product


def product_list(emu, params):
    items = emu.store.newest_first("product")
    if "active" in params:
        active = as_bool(params.pop("active"), "active")
        items = [p for p in items if p["active"] == active]
    return emu.store.page(created_filter(items, params.get("created")), params, "/v1/products")


def product_retrieve(emu, params, id):
    return emu.store.get("product", id)


def price_create(emu, params):
    allow(params, {"currency", "unit_amount", "unit_amount_decimal", "product", "product_data",
                   "recurring", "nickname", "lookup_key", "metadata", "active",
                   "tax_behavior", "billing_scheme", "transfer_lookup_key", "tiers", "tiers_mode"})
    usage = meters.price_usage_fields(emu, params)  # billing_scheme, tiers, recurring[usage_type|meter]
    for required in ("currency",):
        if not params.get(required):
            raise StripeError(400, f"Missing required param: {required}.", code="parameter_missing",
                              param=required)
    if usage["tiers"]:
        params["unit_amount"] = "0"  # a tiered price has no unit amount (null on the object)
    if "unit_amount" not in params:
        raise StripeError(400, "Missing required param: unit_amount.", code="parameter_missing",
                          param="unit_amount")
    unit_amount = as_int(params["unit_amount"], "unit_amount")
    if unit_amount < 0:
        raise StripeError(400, "Invalid non-negative integer", param="unit_amount")
    if params.get("product"):
        product = emu.store.get("product", params["product"], "product")
    elif isinstance(params.get("product_data"), dict) and params["product_data"].get("name"):
        product = emu.store.put(shapes.product(product_id=shapes.new_id("prod_", 14),
                                               name=params["product_data"]["name"], created=emu.now()))
        emu.emit("product.created", product)
    else:
        raise StripeError(400, "You must specify either `product` or `product_data` when creating a price.",
                          param="product")
    recurring = params.get("recurring") or {}
    interval = recurring.get("interval") if isinstance(recurring, dict) else None
    if recurring and interval not in ("day", "week", "month", "year"):
        raise StripeError(400, f"Invalid recurring[interval]: must be one of day, week, month, or year",
                          param="recurring[interval]")
    price = shapes.price(price_id=shapes.new_id("price_"), product_id=product["id"],
                         unit_amount=unit_amount, currency=params["currency"].lower(), created=emu.now(),
                         interval=interval,
                         interval_count=as_int(recurring.get("interval_count", 1), "recurring[interval_count]")
                         if recurring else 1,
                         nickname=params.get("nickname"), lookup_key=params.get("lookup_key"),
                         metadata=merge_metadata({}, params.get("metadata")))
    meters.apply_usage_fields(emu, price, usage)
    emu.store.put(price)
    if product["default_price"] is None:
        product["default_price"] = price["id"]
    emu.emit("price.created", price)
    return price


def price_list(emu, params):
    items = emu.store.newest_first("price")
    for key in ("product", "currency", "type"):
        if key in params:
            value = params.pop(key)
            items = [p for p in items if p[key] == value]
    if "active" in params:
        active = as_bool(params.pop("active"), "active")
        items = [p for p in items if p["active"] == active]
    if "lookup_keys" in params:
        keys = as_list(params.pop("lookup_keys"))
        items = [p for p in items if p["lookup_key"] in keys]
    return emu.store.page(created_filter(items, params.get("created")), params, "/v1/prices")


def price_retrieve(emu, params, id):
    return emu.store.get("price", id)


def seed_price(emu, *, id: str, product: str, product_name: str, unit_amount: int, currency: str = "usd",
               interval: str | None = "month", interval_count: int = 1, nickname=None, lookup_key=None,
               metadata=None) -> dict:
    """A product and price made without events (the emulator's seed catalogue)."""
    if product not in emu.store.objects:
        emu.store.put(shapes.product(product_id=product, name=product_name, created=emu.now()))
    price = emu.store.put(shapes.price(price_id=id, product_id=product, unit_amount=unit_amount,
                                       currency=currency, created=emu.now(), interval=interval,
                                       interval_count=interval_count, nickname=nickname,
                                       lookup_key=lookup_key, metadata=metadata))
    if emu.store.objects[product]["default_price"] is None:
        emu.store.objects[product]["default_price"] = id
    return price


def register(api):
    api.add("POST", "/v1/products", product_create)
    api.add("GET", "/v1/products", product_list)
    api.add("GET", "/v1/products/{id}", product_retrieve)
    api.add("POST", "/v1/prices", price_create)
    api.add("GET", "/v1/prices", price_list)
    api.add("GET", "/v1/prices/{id}", price_retrieve)
