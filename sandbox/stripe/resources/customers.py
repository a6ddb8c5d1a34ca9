"""Customers, their search and deletion."""
from __future__ import annotations

import contextlib
import copy
import re

from .. import shapes
from ..errors import StripeError, allow, metadata as merge_metadata, required
from ..params import as_int, as_list
from ..store import created_filter
from . import payment_methods, subscriptions, test_clocks


def create_customer(emu, *, email=None, name=None, phone=None, description=None, metadata=None,
                    test_clock=None):
    customer = shapes.customer(customer_id=shapes.new_id("cus_", 14), created=emu.now(), email=email,
                               name=name, phone=phone, description=description, metadata=metadata)
    customer["test_clock"] = test_clock
    customer = emu.store.put(customer)
    emu.emit("customer.created", customer)
    return customer


CUSTOMER_FIELDS = {"email", "name", "phone", "description", "metadata", "invoice_settings",
                   "payment_method", "address", "shipping", "preferred_locales", "tax_exempt",
                   "balance", "invoice_prefix", "source", "test_clock", "tax", "tax_id_data",
                   "next_invoice_sequence", "coupon", "promotion_code", "cash_balance", "discounts",
                   "individual_name", "business_name"}
UPDATE_FIELDS = CUSTOMER_FIELDS - {"payment_method", "test_clock", "tax_id_data"} | {"default_source"}
# Known to Stripe, not emulated: refused with a clear error rather than accepted and dropped.
NOT_EMULATED = {"tax", "tax_id_data", "cash_balance"}
ADDRESS_KEYS = {"city", "country", "line1", "line2", "postal_code", "state"}


def _not_emulated(params):
    for key in NOT_EMULATED:
        if params.get(key) not in (None, ""):
            raise StripeError(400, f"The Stripe sandbox does not emulate `{key}` on customers.", param=key)


def _address(value, param: str):
    if value in (None, ""):
        return None
    if not isinstance(value, dict):
        raise StripeError(400, "Invalid object", param=param)
    allow(value, ADDRESS_KEYS)
    return {key: value.get(key) or None for key in sorted(ADDRESS_KEYS)}


def _shipping(value):
    if value in (None, ""):
        return None
    if not isinstance(value, dict):
        raise StripeError(400, "Invalid object", param="shipping")
    allow(value, {"address", "name", "phone"})
    required(value, "name")
    return {"address": _address(value.get("address"), "shipping[address]"), "name": value["name"],
            "phone": value.get("phone") or None}


def _apply_plain_fields(customer: dict, params: dict, previous: dict):
    """Fields that are only stored: contact details, address, locales, tax exemption, balance..."""
    changes = {}
    for field in ("email", "name", "phone", "description", "individual_name", "business_name"):
        if field in params:
            changes[field] = params[field] or None
    if "address" in params:
        changes["address"] = _address(params["address"], "address")
    if "shipping" in params:
        changes["shipping"] = _shipping(params["shipping"])
    if "preferred_locales" in params:
        changes["preferred_locales"] = [str(x) for x in as_list(params["preferred_locales"])]
    if "tax_exempt" in params:
        if params["tax_exempt"] not in ("none", "exempt", "reverse", ""):
            raise StripeError(400, "Invalid tax_exempt: must be one of none, exempt, or reverse", param="tax_exempt")
        changes["tax_exempt"] = params["tax_exempt"] or "none"
    if "balance" in params:
        changes["balance"] = as_int(params["balance"], "balance")
    if params.get("invoice_prefix"):
        if not re.fullmatch(r"[A-Z0-9]{3,12}", params["invoice_prefix"]):
            raise StripeError(400, "Invoice prefix must be 3-12 uppercase letters or numbers.",
                              param="invoice_prefix")
        changes["invoice_prefix"] = params["invoice_prefix"]
    if params.get("next_invoice_sequence"):
        changes["next_invoice_sequence"] = as_int(params["next_invoice_sequence"], "next_invoice_sequence")
    if "metadata" in params:
        changes["metadata"] = merge_metadata(customer["metadata"], params["metadata"])
    for field, value in changes.items():
        if customer.get(field) != value:
            previous.setdefault(field, copy.deepcopy(customer.get(field)))
            customer[field] = value


def _invoice_settings(emu, customer: dict, params: dict, previous: dict, magic: dict):
    settings = params.get("invoice_settings")
    if settings in (None, ""):
        return
    if not isinstance(settings, dict):
        raise StripeError(400, "Invalid object", param="invoice_settings")
    allow(settings, {"default_payment_method", "custom_fields", "footer", "rendering_options"})
    old = copy.deepcopy(customer["invoice_settings"])
    if "default_payment_method" in settings:
        param = "invoice_settings[default_payment_method]"
        pm_id = magic.get(settings["default_payment_method"], settings["default_payment_method"]) or None
        if pm_id:
            pm = emu.store.get("payment_method", pm_id, param)
            if pm["customer"] != customer["id"]:
                raise StripeError(400, f"The customer does not have a payment method with the ID {pm_id}. "
                                       "The payment method must be attached to the customer.", param=param)
        if customer["invoice_settings"]["default_payment_method"] != pm_id:
            customer["invoice_settings"]["default_payment_method"] = pm_id
            emu.store.table(payment_methods.CHARGES_SUCCEED).pop(customer["id"], None)
    if "footer" in settings:
        customer["invoice_settings"]["footer"] = settings["footer"] or None
    if "custom_fields" in settings:
        fields = as_list(settings["custom_fields"])
        for index, field in enumerate(fields):
            if not isinstance(field, dict) or not field.get("name") or not field.get("value"):
                raise StripeError(400, "Each custom field needs a name and a value.",
                                  param=f"invoice_settings[custom_fields][{index}]")
        customer["invoice_settings"]["custom_fields"] = [
            {"name": f["name"], "value": f["value"]} for f in fields] or None
    if isinstance(settings.get("rendering_options"), dict):
        options = settings["rendering_options"]
        allow(options, {"amount_tax_display", "template"})
        for key in ("amount_tax_display", "template"):
            if key in options:
                customer["invoice_settings"]["rendering_options"][key] = options[key] or None
    if old != customer["invoice_settings"]:
        previous.setdefault("invoice_settings", old)


def _discount(emu, customer: dict, params: dict):
    from . import coupons  # coupons may read customers

    given = {k: params[k] for k in ("coupon", "promotion_code", "discounts") if params.get(k) not in (None, "")}
    if not given:
        return
    for source in coupons.resolve_discounts(emu, given, customer_id=customer["id"]):
        coupons.apply_customer_discount(emu, customer, source)


def customer_create(emu, params):
    allow(params, CUSTOMER_FIELDS)
    _not_emulated(params)
    clock_id = test_clocks.customer_clock(emu, params)
    # Check what can fail before anything is created, as Stripe does.
    pm = payment_methods.resolve(emu, params["payment_method"], "payment_method") \
        if params.get("payment_method") else None
    if pm and pm["customer"]:
        raise StripeError(400, "The payment method you provided has already been attached to a customer.",
                          code="payment_method_unexpected_state", param="payment_method")
    number, card = payment_methods.card_of(emu, pm["id"]) if pm else (None, None)
    if card and card.behaviour == "decline":
        raise payment_methods.decline_error(card.decline_code, param="payment_method")
    if params.get("source"):
        source_number = payment_methods.token_number(emu, params["source"], "source")
        source_card = payment_methods.CARDS[source_number]
        if source_card.behaviour == "decline":
            raise payment_methods.decline_error(source_card.decline_code, param="source")
    from . import coupons  # coupons may read customers

    discount_params = {k: params[k] for k in ("coupon", "promotion_code", "discounts")
                       if params.get(k) not in (None, "")}
    if discount_params:
        coupons.resolve_discounts(emu, discount_params)
    settings = params.get("invoice_settings")
    default_pm = settings.get("default_payment_method") if isinstance(settings, dict) else None
    if default_pm and default_pm != params.get("payment_method"):
        emu.store.get("payment_method", default_pm, "invoice_settings[default_payment_method]")
        raise StripeError(400, f"The customer does not have a payment method with the ID {default_pm}. The "
                               "payment method must be attached to the customer.",
                          param="invoice_settings[default_payment_method]")

    customer = shapes.customer(customer_id=shapes.new_id("cus_", 14),
                               created=test_clocks.clock_now(emu, {"test_clock": clock_id}),
                               email=None, name=None, phone=None, description=None)
    customer["test_clock"] = clock_id
    _apply_plain_fields(customer, params, {})
    emu.store.put(customer)
    magic = {}
    if pm:
        magic[params["payment_method"]] = pm["id"]
        pm["customer"] = customer["id"]
    _invoice_settings(emu, customer, params, {}, magic)
    emu.emit("customer.created", customer)
    if pm:
        emu.emit("payment_method.attached", pm)
    if params.get("source"):
        card_obj = payment_methods.source_card(emu, customer, params["source"])
        customer["default_source"] = card_obj["id"]
    _discount(emu, customer, params)
    return customer


def customer_update(emu, params, id):
    allow(params, UPDATE_FIELDS)
    _not_emulated(params)
    customer = emu.store.get("customer", id)
    previous = {}
    _apply_plain_fields(customer, params, previous)
    _invoice_settings(emu, customer, params, previous, {})
    if params.get("source"):
        card_obj = payment_methods.source_card(emu, customer, params["source"])
        previous.setdefault("default_source", customer["default_source"])
        customer["default_source"] = card_obj["id"]
    elif "default_source" in params:
        source = params["default_source"] or None
        if source:
            card_obj = emu.store.objects.get(source)
            if not card_obj or card_obj.get("object") != "card" or card_obj["customer"] != id:
                raise StripeError(400, f"No such source: '{source}'", code="resource_missing",
                                  param="default_source")
        if customer["default_source"] != source:
            previous.setdefault("default_source", customer["default_source"])
            customer["default_source"] = source
    if previous:
        emu.emit("customer.updated", customer, previous)
    _discount(emu, customer, params)
    return customer


def customer_list(emu, params):
    items = emu.store.newest_first("customer")
    if "email" in params:  # Stripe's email filter is exact and case-sensitive
        email = params.pop("email")
        items = [c for c in items if c["email"] == email]
    return emu.store.page(created_filter(items, params.get("created")), params, "/v1/customers")


def customer_search(emu, params):
    return emu.store.search("customer", params, {"email", "name", "phone", "created"}, "/v1/customers/search")


def customer_retrieve(emu, params, id):
    obj = emu.store.objects.get(id)
    if obj is not None and obj.get("object") == "customer" and obj.get("deleted"):
        return obj  # Stripe answers a deleted customer's stub, not a 404
    return emu.store.get("customer", id)


def customer_delete(emu, params, id):
    customer = emu.store.get("customer", id)
    for sid in emu.store.ids["subscription"]:
        sub = emu.store.objects[sid]
        if sub["customer"] == id and sub["status"] != "canceled":
            subscriptions.cancel_subscription(emu, sub, reason="cancellation_requested")
    emu.emit("customer.deleted", customer)
    emu.store.objects[id] = {"id": id, "object": "customer", "deleted": True}
    return emu.store.objects[id]


def register(api):
    api.add("POST", "/v1/customers", customer_create)
    api.add("GET", "/v1/customers", customer_list)
    api.add("GET", "/v1/customers/search", customer_search)
    api.add("GET", "/v1/customers/{id}", customer_retrieve)
    api.add("POST", "/v1/customers/{id}", customer_update)
    api.add("DELETE", "/v1/customers/{id}", customer_delete)
    api.virtual("customer", "sources", lambda emu, customer: {
        "object": "list", "data": copy.deepcopy([c for c in emu.store.newest_first("card")
                                                 if c["customer"] == customer["id"]]),
        "has_more": False, "url": f"/v1/customers/{customer['id']}/sources"})
