"""Products and prices."""
from __future__ import annotations

import copy

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


# -- updates, archiving, deletion ---------------------------------------------------------------------
def _changed(before: dict, after: dict) -> dict:
    return {k: before[k] for k in before if before[k] != after.get(k)}


PRODUCT_UPDATE_FIELDS = {"active", "default_price", "description", "images", "marketing_features", "metadata",
                         "name", "package_dimensions", "shippable", "statement_descriptor", "tax_code",
                         "unit_label", "url"}


def product_update(emu, params, id):
    allow(params, PRODUCT_UPDATE_FIELDS)
    product = emu.store.get("product", id)
    before = copy.deepcopy(product)
    if "name" in params:
        if not params["name"]:
            raise StripeError(400, "You must provide a non-empty name.", param="name")
        product["name"] = params["name"]
    for key in ("description", "statement_descriptor", "tax_code", "unit_label", "url"):
        if key in params:
            product[key] = params[key] or None
    if "active" in params:
        product["active"] = as_bool(params["active"], "active")
    if "shippable" in params:
        product["shippable"] = as_bool(params["shippable"], "shippable") if params["shippable"] != "" else None
    if "images" in params:
        product["images"] = [str(i) for i in as_list(params["images"])]
    if "marketing_features" in params:
        features = as_list(params["marketing_features"])
        for index, feature in enumerate(features):
            if not isinstance(feature, dict) or not feature.get("name"):
                raise StripeError(400, f"Missing required param: marketing_features[{index}][name].",
                                  code="parameter_missing", param=f"marketing_features[{index}][name]")
        product["marketing_features"] = [{"name": f["name"]} for f in features]
    if "default_price" in params:
        price_id = params["default_price"] or None
        if price_id:
            price = emu.store.get("price", price_id, "default_price")
            if price["product"] != id:
                raise StripeError(400, f"The price {price_id} does not belong to this product.",
                                  param="default_price")
            if not price["active"]:
                raise StripeError(400, "The default price must be active.", param="default_price")
        product["default_price"] = price_id
    if "metadata" in params:
        product["metadata"] = merge_metadata(product["metadata"], params["metadata"])
    previous = _changed(before, product)
    if previous:
        product["updated"] = emu.now()
        emu.emit("product.updated", product, previous)
    return product


def product_features(emu, params, id):
    """Entitlement features attached to a product: the sandbox has none (dj-stripe reads this list)."""
    emu.store.get("product", id)
    return emu.store.page([], params, f"/v1/products/{id}/features")


def product_delete(emu, params, id):
    allow(params, set())
    product = emu.store.get("product", id)
    if any(p["product"] == id for p in emu.store.newest_first("price")):
        raise StripeError(400, "This product cannot be deleted because it has one or more user-created prices.",
                          param="id")
    emu.emit("product.deleted", product)
    emu.store.objects[id] = {"id": id, "object": "product", "deleted": True}
    return emu.store.objects[id]


PRICE_UPDATE_FIELDS = {"active", "currency_options", "lookup_key", "metadata", "nickname", "tax_behavior",
                       "transfer_lookup_key"}


def price_update(emu, params, id):
    allow(params, PRICE_UPDATE_FIELDS)
    price = emu.store.get("price", id)
    before = copy.deepcopy(price)
    if "active" in params:
        active = as_bool(params["active"], "active")
        product = emu.store.objects.get(price["product"]) or {}
        if not active and product.get("default_price") == id:
            raise StripeError(400, "This price cannot be archived because it is the default price of its product.",
                              param="active")
        price["active"] = active
    if "nickname" in params:
        price["nickname"] = params["nickname"] or None
    if "lookup_key" in params:
        key = params["lookup_key"] or None
        holder = next((p for p in emu.store.newest_first("price") if key and p["lookup_key"] == key
                       and p["id"] != id), None)
        if holder is not None:
            if not as_bool(params.get("transfer_lookup_key", "false"), "transfer_lookup_key"):
                raise StripeError(400, f"A price ({holder['id']}) already uses that lookup key.",
                                  param="lookup_key")
            holder_before = {"lookup_key": holder["lookup_key"]}
            holder["lookup_key"] = None
            emu.emit("price.updated", holder, holder_before)
        price["lookup_key"] = key
    if params.get("tax_behavior"):
        if price["tax_behavior"] not in (None, "unspecified") and price["tax_behavior"] != params["tax_behavior"]:
            raise StripeError(400, "The tax behavior of a price cannot be changed once it is set.",
                              param="tax_behavior")
        if params["tax_behavior"] not in ("inclusive", "exclusive", "unspecified"):
            raise StripeError(400, "Invalid tax_behavior: must be one of inclusive, exclusive, or unspecified",
                              param="tax_behavior")
        price["tax_behavior"] = params["tax_behavior"]
    if params.get("currency_options") not in (None, ""):
        raise StripeError(400, "The Stripe sandbox does not emulate currency_options.", param="currency_options")
    if "metadata" in params:
        price["metadata"] = merge_metadata(price["metadata"], params["metadata"])
    previous = _changed(before, price)
    if previous:
        emu.emit("price.updated", price, previous)
        if price.get("type") == "recurring":
            emu.emit("plan.updated", _plan(emu, price), _plan_fields(previous))
    return price


def _plan_fields(previous: dict) -> dict:
    return {k: v for k, v in previous.items() if k in ("active", "metadata", "nickname")}


# -- legacy plans: a plan is a recurring price seen through the older API -------------------------------
PLAN_FIELDS = {"id", "amount", "amount_decimal", "currency", "interval", "interval_count", "product", "nickname",
               "metadata", "active", "usage_type", "billing_scheme", "trial_period_days", "meter", "tiers",
               "tiers_mode", "transform_usage", "aggregate_usage"}


def plan_create(emu, params):
    allow(params, PLAN_FIELDS)
    for name in ("currency", "interval"):
        if not params.get(name):
            raise StripeError(400, f"Missing required param: {name}.", code="parameter_missing", param=name)
    for name in ("tiers", "tiers_mode", "transform_usage", "meter", "aggregate_usage"):
        if params.get(name) not in (None, ""):
            raise StripeError(400, f"The Stripe sandbox does not emulate `{name}` on legacy plans; create a "
                                   "price instead.", param=name)
    if params.get("usage_type") not in (None, "", "licensed") or \
            params.get("billing_scheme") not in (None, "", "per_unit"):
        raise StripeError(400, "The Stripe sandbox emulates only licensed, per-unit legacy plans; create a price "
                               "for metered or tiered billing.", param="usage_type")
    if "amount" not in params:
        raise StripeError(400, "Missing required param: amount.", code="parameter_missing", param="amount")
    if params["interval"] not in ("day", "week", "month", "year"):
        raise StripeError(400, "Invalid interval: must be one of day, week, month, or year", param="interval")
    plan_id = params.get("id") or shapes.new_id("price_")
    if plan_id in emu.store.objects and not emu.store.objects[plan_id].get("deleted"):
        raise StripeError(400, "Plan already exists.", code="resource_already_exists", param="id")
    product = params.get("product")
    if isinstance(product, dict):
        if not product.get("name"):
            raise StripeError(400, "Missing required param: product[name].", code="parameter_missing",
                              param="product[name]")
        product_id = emu.store.put(shapes.product(product_id=product.get("id") or shapes.new_id("prod_", 14),
                                                  name=product["name"], created=emu.now()))["id"]
        emu.emit("product.created", emu.store.objects[product_id])
    elif product:
        product_id = emu.store.get("product", product, "product")["id"]
    else:
        raise StripeError(400, "Missing required param: product.", code="parameter_missing", param="product")
    amount = as_int(params["amount"], "amount")
    if amount < 0:
        raise StripeError(400, "Invalid non-negative integer", param="amount")
    price = shapes.price(price_id=plan_id, product_id=product_id, unit_amount=amount,
                         currency=params["currency"].lower(), created=emu.now(), interval=params["interval"],
                         interval_count=as_int(params.get("interval_count", 1), "interval_count"),
                         nickname=params.get("nickname") or None, metadata=merge_metadata({}, params.get("metadata")),
                         active=as_bool(params.get("active", "true"), "active"))
    emu.store.objects.pop(plan_id, None)
    emu.store.put(price)
    plan = _plan(emu, price)
    if params.get("trial_period_days"):
        emu.store.table(PLAN_TRIALS)[plan_id] = as_int(params["trial_period_days"], "trial_period_days")
        plan["trial_period_days"] = emu.store.table(PLAN_TRIALS)[plan_id]
    if emu.store.objects[product_id]["default_price"] is None:
        emu.store.objects[product_id]["default_price"] = plan_id
    emu.emit("plan.created", plan)
    emu.emit("price.created", price)
    return plan


PLAN_TRIALS = "plan.trial_period_days"  # store table: plan id -> trial days (not on the price)


def _plan(emu, price: dict) -> dict:
    plan = shapes.plan_from_price(price)
    # The event example in fixtures3 is a plan of an older version, which had aggregate_usage.
    plan.update(trial_period_days=emu.store.table(PLAN_TRIALS).get(price["id"]), aggregate_usage=None)
    return plan


def _plan_price(emu, id: str) -> dict:
    obj = emu.store.objects.get(id)
    if obj is None or obj.get("object") != "price" or obj.get("deleted") or obj.get("type") != "recurring":
        raise StripeError(404, f"No such plan: '{id}'", code="resource_missing", param="id")
    return obj


def plan_retrieve(emu, params, id):
    return _plan(emu, _plan_price(emu, id))


def plan_list(emu, params):
    items = [p for p in emu.store.newest_first("price") if p.get("type") == "recurring"]
    if "product" in params:
        product = params.pop("product")
        items = [p for p in items if p["product"] == product]
    if "active" in params:
        active = as_bool(params.pop("active"), "active")
        items = [p for p in items if p["active"] == active]
    page = emu.store.page(created_filter(items, params.get("created")), params, "/v1/plans")
    page["data"] = [_plan(emu, p) for p in page["data"]]
    return page


def plan_update(emu, params, id):
    allow(params, {"active", "metadata", "nickname", "product", "trial_period_days"})
    price = _plan_price(emu, id)
    before = _plan(emu, price)
    if params.get("product"):
        product = emu.store.get("product", params["product"], "product")
        price["product"] = product["id"]
    if "trial_period_days" in params:
        days = params["trial_period_days"]
        if days in ("", None):
            emu.store.table(PLAN_TRIALS).pop(id, None)
        else:
            emu.store.table(PLAN_TRIALS)[id] = as_int(days, "trial_period_days")
    price_params = {k: params[k] for k in ("active", "metadata", "nickname") if k in params}
    price_before = copy.deepcopy(price)
    if "active" in price_params:
        price["active"] = as_bool(price_params["active"], "active")
    if "nickname" in price_params:
        price["nickname"] = price_params["nickname"] or None
    if "metadata" in price_params:
        price["metadata"] = merge_metadata(price["metadata"], price_params["metadata"])
    plan = _plan(emu, price)
    previous = _changed(before, plan)
    if previous:
        emu.emit("plan.updated", plan, previous)
    price_previous = _changed(price_before, price)
    if price_previous:
        emu.emit("price.updated", price, price_previous)
    return plan


def plan_delete(emu, params, id):
    """Deleting a plan deletes its price: `plan.deleted` and `price.deleted`. (Prices made through
    /v1/prices cannot be deleted through the API, only archived.)"""
    allow(params, set())
    price = _plan_price(emu, id)
    plan = _plan(emu, price)
    product = emu.store.objects.get(price["product"])
    if product and product.get("default_price") == id:
        product["default_price"] = None
    emu.emit("plan.deleted", plan)
    emu.emit("price.deleted", price)
    emu.store.objects[id] = {"id": id, "object": "price", "deleted": True}
    return {"id": id, "object": "plan", "deleted": True}


def register(api):
    api.add("POST", "/v1/products", product_create)
    api.add("GET", "/v1/products", product_list)
    api.add("GET", "/v1/products/{id}", product_retrieve)
    api.add("POST", "/v1/prices", price_create)
    api.add("GET", "/v1/prices", price_list)
    api.add("GET", "/v1/prices/{id}", price_retrieve)
    api.add("POST", "/v1/products/{id}", product_update)
    api.add("DELETE", "/v1/products/{id}", product_delete)
    api.add("GET", "/v1/products/{id}/features", product_features)
    api.add("POST", "/v1/prices/{id}", price_update)
    api.add("POST", "/v1/plans", plan_create)
    api.add("GET", "/v1/plans", plan_list)
    api.add("GET", "/v1/plans/{id}", plan_retrieve)
    api.add("POST", "/v1/plans/{id}", plan_update)
    api.add("DELETE", "/v1/plans/{id}", plan_delete)
