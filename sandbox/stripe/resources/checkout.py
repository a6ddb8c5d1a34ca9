"""Checkout sessions in subscription mode and their payment (the hosted page calls `pay_checkout`)."""
from __future__ import annotations

import copy
import re

from .. import shapes
from ..cards import DECLINE_MESSAGES, NON_TEST_CARD, TEST_CARDS, card_digits, luhn_ok
from ..errors import StripeError, allow, metadata as merge_metadata
from ..params import as_int
from ..store import created_filter
from . import customers, invoices, payment_intents, payment_methods, subscriptions

DAY = 86400
LINE_ITEMS = "checkout.line_items"  # store table: session id -> line items
SUBSCRIPTION_DATA = "checkout.subscription_data"  # session id -> {"metadata": ...}


def pay_checkout(emu, session_id: str, card: str, email: str | None, name: str | None) -> dict:
    session = emu.store.get("checkout.session", session_id)
    if session["status"] != "open":
        return {"ok": False, "error": "This Checkout Session is no longer active.", "status": session["status"]}
    customer = emu.store.objects.get(session["customer"]) if session["customer"] else None
    email = (customer or {}).get("email") or (email or "").strip() or session["customer_email"]
    if not email or not re.fullmatch(r"[^@\s]+@[^@\s]+\.[^@\s]+", email):
        return {"ok": False, "error": "Your email address is invalid."}
    number = card_digits(card)
    if not luhn_ok(number):
        return {"ok": False, "error": "Your card number is incorrect."}
    if number not in TEST_CARDS:
        return {"ok": False, "error": NON_TEST_CARD}
    ok, decline_code = TEST_CARDS[number]
    if not ok:
        return {"ok": False, "error": DECLINE_MESSAGES.get(decline_code, "Your card was declined."),
                "decline_code": decline_code}

    name = (name or "").strip() or None
    if customer is None:
        customer = customers.create_customer(emu, email=email, name=name)
    pm = payment_methods.attach_card(emu, customer, number, email=email, name=name)
    items = emu.store.table(LINE_ITEMS)[session_id]
    sub = subscriptions.create_subscription(emu, customer, items, pm["id"],
                                            metadata=emu.store.table(SUBSCRIPTION_DATA)[session_id].get("metadata"))
    invoice = invoices.create_invoice(emu, sub, "subscription_create",
                                      sub["current_period_start"], sub["current_period_end"])
    sub["latest_invoice"] = invoice["id"]
    session.update(status="complete", payment_status="paid", customer=customer["id"],
                   subscription=sub["id"], invoice=invoice["id"], url=None,
                   customer_details=shapes.customer_details(customer))
    emu.emit("checkout.session.completed", session)
    emu.emit("customer.subscription.created", sub)
    emu.emit("invoice.created", invoice)
    invoices.finalize_invoice(emu, invoice)
    payment_intents.customer_present(emu, pm["id"])  # the customer completes 3D Secure on the page
    invoices.attempt_invoice(emu, invoice, pm["id"])
    redirect = session["success_url"].replace("{CHECKOUT_SESSION_ID}", session_id)
    return {"ok": True, "redirect": redirect, "customer": customer["id"], "subscription": sub["id"],
            "invoice": invoice["id"]}


def expire_session(emu, session_id: str):
    session = emu.store.objects[session_id]
    session.update(status="expired", url=None)
    emu.emit("checkout.session.expired", session)


CHECKOUT_FIELDS = {"mode", "line_items", "customer", "customer_email", "client_reference_id",
                   "metadata", "subscription_data", "success_url", "cancel_url", "expires_at",
                   "payment_method_types", "locale", "allow_promotion_codes",
                   "billing_address_collection", "customer_update", "automatic_tax",
                   "tax_id_collection", "consent_collection", "phone_number_collection",
                   "payment_method_collection", "ui_mode", "return_url", "custom_text",
                   "submit_type", "discounts", "currency", "customer_creation",
                   "payment_method_configuration", "saved_payment_method_options"}


def checkout_session_create(emu, params):
    allow(params, CHECKOUT_FIELDS)
    mode = params.get("mode")
    if not mode:
        raise StripeError(400, "Missing required param: mode.", code="parameter_missing", param="mode")
    if mode != "subscription":
        raise StripeError(400, f"The Stripe sandbox supports Checkout only in subscription mode, not '{mode}'.",
                          param="mode")
    if not params.get("success_url") and params.get("ui_mode") not in ("embedded", "custom"):
        raise StripeError(400, "Missing required param: success_url.", code="parameter_missing",
                          param="success_url")
    if params.get("customer") and params.get("customer_email"):
        raise StripeError(400, "You may only specify one of these parameters: customer, customer_email.",
                          param="customer_email")
    customer = emu.store.get("customer", params["customer"], "customer") if params.get("customer") else None
    raw_items = params.get("line_items")
    if not isinstance(raw_items, list) or not raw_items:
        raise StripeError(400, "Missing required param: line_items.", code="parameter_missing",
                          param="line_items")
    items, currency, interval = [], None, None
    for index, raw in enumerate(raw_items):
        if not isinstance(raw, dict) or not raw.get("price"):
            raise StripeError(400, f"Missing required param: line_items[{index}][price].",
                              code="parameter_missing", param=f"line_items[{index}][price]")
        price = emu.store.get("price", raw["price"], f"line_items[{index}][price]")
        quantity = as_int(raw.get("quantity", 1), f"line_items[{index}][quantity]")
        if quantity < 1:
            raise StripeError(400, "Quantity must be at least 1.", param=f"line_items[{index}][quantity]")
        if price["type"] != "recurring":
            raise StripeError(400, "You must provide at least one recurring price in `subscription` mode "
                                   "when using prices.", param=f"line_items[{index}][price]")
        if not price["active"]:
            raise StripeError(400, f"The price specified is inactive. This field only accepts active prices.",
                              param=f"line_items[{index}][price]")
        if currency and price["currency"] != currency or interval and price["recurring"]["interval"] != interval:
            raise StripeError(400, "All prices on a subscription must have the same currency and "
                                   "recurring interval.", param=f"line_items[{index}][price]")
        currency, interval = price["currency"], price["recurring"]["interval"]
        product = emu.store.objects[price["product"]]
        items.append(shapes.checkout_line_item(item_id=shapes.new_id("li_"), price_obj=price,
                                               product_name=product["name"], quantity=quantity))
    now = emu.now()
    expires_at = as_int(params["expires_at"], "expires_at") if params.get("expires_at") else \
        now + emu.checkout_expires_seconds
    if not now + 1800 <= expires_at <= now + DAY:
        raise StripeError(400, "The `expires_at` timestamp must be between 30 minutes and 24 hours "
                               "from Checkout Session creation.", param="expires_at")
    subscription_data = params.get("subscription_data") or {}
    if not isinstance(subscription_data, dict):
        raise StripeError(400, "Invalid object", param="subscription_data")
    session_id = "cs_test_" + shapes.new_id("", 58)
    session = shapes.checkout_session(
        session_id=session_id, created=now, expires_at=expires_at,
        url=f"{emu.base_url}/checkout/{session_id}", mode=mode, currency=currency,
        amount=sum(i["amount_total"] for i in items), success_url=params.get("success_url"),
        cancel_url=params.get("cancel_url"), customer_id=customer["id"] if customer else None,
        customer_email=params.get("customer_email") or None,
        client_reference_id=params.get("client_reference_id") or None,
        metadata=merge_metadata({}, params.get("metadata")), locale=params.get("locale"))
    emu.store.put(session)
    emu.store.table(LINE_ITEMS)[session_id] = items
    emu.store.table(SUBSCRIPTION_DATA)[session_id] = {
        "metadata": merge_metadata({}, subscription_data.get("metadata"))}
    return session


def checkout_session_list(emu, params):
    items = emu.store.newest_first("checkout.session")
    for key in ("customer", "subscription", "status", "payment_intent"):
        if key in params:
            value = params.pop(key)
            items = [s for s in items if s[key] == value]
    return emu.store.page(created_filter(items, params.get("created")), params, "/v1/checkout/sessions")


def checkout_session_retrieve(emu, params, id):
    return emu.store.get("checkout.session", id)


def checkout_session_line_items(emu, params, id):
    emu.store.get("checkout.session", id)
    return emu.store.page(emu.store.table(LINE_ITEMS)[id], params, f"/v1/checkout/sessions/{id}/line_items")


def checkout_session_expire(emu, params, id):
    session = emu.store.get("checkout.session", id)
    if session["status"] != "open":
        raise StripeError(400, f"Only Checkout Sessions with a status in [\"open\"] can be expired. "
                               f"This Checkout Session has a status of \"{session['status']}\".")
    expire_session(emu, id)
    return session


def register(api):
    api.add("POST", "/v1/checkout/sessions", checkout_session_create)
    api.add("GET", "/v1/checkout/sessions", checkout_session_list)
    api.add("GET", "/v1/checkout/sessions/{id}", checkout_session_retrieve)
    api.add("GET", "/v1/checkout/sessions/{id}/line_items", checkout_session_line_items)
    api.add("POST", "/v1/checkout/sessions/{id}/expire", checkout_session_expire)
    api.virtual("checkout.session", "line_items", lambda emu, session: {
        "object": "list", "data": copy.deepcopy(emu.store.table(LINE_ITEMS).get(session["id"], [])),
        "has_more": False, "url": f"/v1/checkout/sessions/{session['id']}/line_items"})
    api.on_clock(due)


def due(emu, until):
    return [(s["expires_at"], 0, s["id"], expire_session) for s in emu.store.all("checkout.session")
            if s["status"] == "open" and s["expires_at"] <= until]
