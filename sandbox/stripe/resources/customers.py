"""Customers, their search and deletion."""
from __future__ import annotations

import contextlib
import copy

from .. import shapes
from ..errors import StripeError, allow, metadata as merge_metadata
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
                   "next_invoice_sequence", "coupon", "promotion_code", "cash_balance"}


def customer_create(emu, params):
    allow(params, CUSTOMER_FIELDS)
    clock_id = test_clocks.customer_clock(emu, params)
    with emu.at(emu.store.objects[clock_id]["frozen_time"]) if clock_id else contextlib.nullcontext():
        customer = create_customer(emu, email=params.get("email") or None, name=params.get("name") or None,
                                   phone=params.get("phone") or None,
                                   description=params.get("description") or None,
                                   metadata=merge_metadata({}, params.get("metadata")), test_clock=clock_id)
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


def customer_update(emu, params, id):
    allow(params, CUSTOMER_FIELDS - {"payment_method"} | {"default_source"})
    customer = emu.store.get("customer", id)
    previous = {}
    for field in ("email", "name", "phone", "description"):
        if field in params:
            value = params[field] or None
            if customer[field] != value:
                previous[field] = customer[field]
                customer[field] = value
    if "metadata" in params:
        metadata = merge_metadata(customer["metadata"], params["metadata"])
        if metadata != customer["metadata"]:
            previous["metadata"] = customer["metadata"]
            customer["metadata"] = metadata
    settings = params.get("invoice_settings")
    if isinstance(settings, dict) and "default_payment_method" in settings:
        pm_id = settings["default_payment_method"] or None
        if pm_id:
            pm = emu.store.get("payment_method", pm_id, "invoice_settings[default_payment_method]")
            if pm["customer"] != id:
                raise StripeError(400, f"The customer does not have a payment method with the ID {pm_id}. "
                                       "The payment method must be attached to the customer.",
                                  param="invoice_settings[default_payment_method]")
        if customer["invoice_settings"]["default_payment_method"] != pm_id:
            previous["invoice_settings"] = copy.deepcopy(customer["invoice_settings"])
            customer["invoice_settings"]["default_payment_method"] = pm_id
            emu.store.table(payment_methods.CHARGES_SUCCEED).pop(id, None)
    if previous:
        emu.emit("customer.updated", customer, previous)
    return customer


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
    api.virtual("customer", "sources",
                lambda emu, customer: shapes.empty_list(f"/v1/customers/{customer['id']}/sources"))
