"""Payment methods (cards) and the charge outcome they decide."""
from __future__ import annotations

import copy

from .. import shapes
from ..cards import TEST_CARDS

CARD_NUMBERS = "payment_method.card_numbers"  # store table: pm id -> test card number
CHARGES_SUCCEED = "customer.charges_succeed"  # customer id -> forced outcome (set_card)


def attach_card(emu, customer: dict, number: str, *, email=None, name=None) -> dict:
    pm = shapes.payment_method(pm_id=shapes.new_id("pm_"), number=number, created=emu.now(),
                               customer_id=customer["id"], email=email, name=name)
    emu.store.put(pm)
    emu.store.table(CARD_NUMBERS)[pm["id"]] = number
    emu.emit("payment_method.attached", pm)
    return pm


def set_default_payment_method(emu, customer: dict, pm_id: str):
    previous = copy.deepcopy(customer["invoice_settings"])
    customer["invoice_settings"]["default_payment_method"] = pm_id
    emu.emit("customer.updated", customer, {"invoice_settings": previous})
    for sid in emu.store.ids["subscription"]:
        sub = emu.store.objects[sid]
        if (sub["customer"] == customer["id"] and sub["status"] != "canceled"
                and sub["default_payment_method"] != pm_id):
            old = sub["default_payment_method"]
            sub["default_payment_method"] = pm_id
            emu.emit("customer.subscription.updated", sub, {"default_payment_method": old})


def charge_ok(emu, customer: dict, pm_id: str | None) -> tuple[bool, str | None]:
    """(succeeds, decline code) for a charge on `pm_id` or the customer's default card."""
    override = emu.store.table(CHARGES_SUCCEED).get(customer["id"])
    if override is not None:
        return override, None if override else "generic_decline"
    pm_id = pm_id or customer["invoice_settings"]["default_payment_method"]
    number = emu.store.table(CARD_NUMBERS).get(pm_id)
    if number is None:
        return False, "no_payment_method"
    return TEST_CARDS.get(number, (False, "generic_decline"))


def customer_payment_methods(emu, params, id):
    emu.store.get("customer", id)
    params["customer"] = id
    return payment_method_list(emu, params, url=f"/v1/customers/{id}/payment_methods")


def payment_method_list(emu, params, url="/v1/payment_methods"):
    items = emu.store.newest_first("payment_method")
    customer = params.pop("customer", None)
    if customer:
        emu.store.get("customer", customer, "customer")
        items = [p for p in items if p["customer"] == customer]
    kind = params.pop("type", None)
    if kind:
        items = [p for p in items if p["type"] == kind]
    return emu.store.page(items, params, url)


def payment_method_retrieve(emu, params, id):
    return emu.store.get("payment_method", id)


def register(api):
    api.add("GET", "/v1/customers/{id}/payment_methods", customer_payment_methods)
    api.add("GET", "/v1/payment_methods", payment_method_list)
    api.add("GET", "/v1/payment_methods/{id}", payment_method_retrieve)
