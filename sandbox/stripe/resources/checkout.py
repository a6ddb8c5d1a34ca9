"""Checkout sessions in subscription, payment and setup modes and their completion (the hosted page calls
`pay_checkout`)."""
from __future__ import annotations

import copy
import re

from .. import shapes
from ..cards import DECLINE_MESSAGES, NON_TEST_CARD, TEST_CARDS, card_digits, luhn_ok
from ..errors import StripeError, allow, metadata as merge_metadata
from ..params import as_bool, as_int, as_list
from ..store import created_filter
from . import coupons, customers, invoices, payment_intents, payment_methods, setup_intents, subscriptions

DAY = 86400
LINE_ITEMS = "checkout.line_items"  # store table: session id -> line items
SUBSCRIPTION_DATA = "checkout.subscription_data"  # session id -> subscription/payment_intent data


def _card_error(number: str) -> str | None:
    if not luhn_ok(number):
        return "Your card number is incorrect."
    if number not in TEST_CARDS:
        return NON_TEST_CARD
    ok, decline_code = TEST_CARDS[number]
    if not ok:
        return DECLINE_MESSAGES.get(decline_code, "Your card was declined.")
    return None


def pay_checkout(emu, session_id: str, card: str, email: str | None, name: str | None, *, phone: str | None = None,
                 promotion_code: str | None = None) -> dict:
    """Complete an open session as the hosted page does, in its mode: subscription (a subscription and
    its first invoice, charged), payment (a PaymentIntent) or setup (a SetupIntent saving the card)."""
    session = emu.store.get("checkout.session", session_id)
    if session["status"] != "open":
        return {"ok": False, "error": "This Checkout Session is no longer active.", "status": session["status"]}
    customer = emu.store.objects.get(session["customer"]) if session["customer"] else None
    email = (customer or {}).get("email") or (email or "").strip() or session["customer_email"]
    if not email or not re.fullmatch(r"[^@\s]+@[^@\s]+\.[^@\s]+", email):
        return {"ok": False, "error": "Your email address is invalid."}
    phone = (phone or "").strip() or None
    if session["phone_number_collection"]["enabled"] and not phone:
        return {"ok": False, "error": "Your phone number is required."}
    number = card_digits(card)
    options = emu.store.table(SUBSCRIPTION_DATA)[session_id]
    needs_card = not (session["mode"] == "subscription" and options.get("trial_period_days")
                      and session["payment_method_collection"] == "if_required") and session["amount_total"] >= 0
    if needs_card or number:
        error = _card_error(number)
        if error:
            return {"ok": False, "error": error, "decline_code": TEST_CARDS.get(number, (0, None))[1]}
    if promotion_code and session["allow_promotion_codes"]:
        found = [p for p in emu.store.all("promotion_code") if p["code"].lower() == promotion_code.strip().lower()
                 and p["active"]]
        if not found:
            return {"ok": False, "error": "This code is invalid."}
        _apply_discounts(emu, session, [{"promotion_code": found[0]["id"]}])

    name = (name or "").strip() or None
    creates_customer = session["mode"] == "subscription" or session["customer_creation"] == "always" or (
        session["mode"] == "setup") or options.get("setup_future_usage")
    if customer is None and creates_customer:
        customer = customers.create_customer(emu, email=email, name=name, phone=phone)
    elif customer is not None and phone and not customer["phone"]:
        customer["phone"] = phone
        emu.emit("customer.updated", customer, {"phone": None})
    result = {"ok": True, "customer": customer["id"] if customer else None}
    if session["mode"] == "subscription":
        result.update(_complete_subscription(emu, session, customer, number, name))
    elif session["mode"] == "payment":
        answer = _complete_payment(emu, session, customer, number, email, name)
        if not answer.get("ok", True):
            return answer
        result.update(answer)
    else:
        answer = _complete_setup(emu, session, customer, number, email, name)
        if not answer.get("ok", True):
            return answer
        result.update(answer)
    details = shapes.customer_details(customer) if customer else {
        "address": None, "email": email, "name": name, "phone": phone, "tax_exempt": "none", "tax_ids": [],
        "business_name": None, "individual_name": None}
    if phone:
        details["phone"] = phone
    session.update(status="complete", customer=customer["id"] if customer else None, url=None,
                   customer_details=details)
    emu.emit("checkout.session.completed", session)
    for event_type, obj in result.pop("after", []):
        emu.emit(event_type, obj)
    for step in result.pop("then", []):
        step()
    result["redirect"] = session["success_url"].replace("{CHECKOUT_SESSION_ID}", session_id) \
        if session["success_url"] else session.get("return_url")
    return result


def _complete_subscription(emu, session, customer, number, name) -> dict:
    options = emu.store.table(SUBSCRIPTION_DATA)[session["id"]]
    pm = payment_methods.attach_card(emu, customer, number, email=customer["email"], name=name) if number else None
    items = emu.store.table(LINE_ITEMS)[session["id"]]
    trial_days = options.get("trial_period_days")
    trial_end = emu.now() + trial_days * DAY if trial_days else None
    sub = subscriptions.create_subscription(emu, customer, items, pm["id"] if pm else None,
                                            metadata=options.get("metadata"), trial_end=trial_end)
    if options.get("trial_settings"):
        sub["trial_settings"] = options["trial_settings"]
    if session["discounts"]:
        sources = [{"coupon": d.get("coupon"), "promotion_code": d.get("promotion_code"), "discount": None}
                   for d in session["discounts"]]
        for source in sources:
            if source["promotion_code"] and not source["coupon"]:
                source["coupon"] = emu.store.objects[source["promotion_code"]]["promotion"]["coupon"]
        sub["discounts"] = coupons.create_discounts(emu, sources, customer=customer["id"], subscription=sub["id"])
        coupons.announce_discounts(emu, [], sub["discounts"])
    invoice = subscriptions._invoice_for_period(emu, sub, "subscription_create", sub["current_period_start"],
                                                sub["current_period_end"])
    session.update(subscription=sub["id"], invoice=invoice["id"],
                   payment_status="no_payment_required" if invoice["amount_due"] == 0 else "paid")

    def bill():
        if pm:
            payment_intents.customer_present(emu, pm["id"])
        invoices.finalize_invoice(emu, invoice)
        if invoice["status"] == "open":
            invoices.attempt_invoice(emu, invoice, pm["id"] if pm else None)
    return {"subscription": sub["id"], "invoice": invoice["id"],
            "after": [("customer.subscription.created", sub), ("invoice.created", invoice)], "then": [bill]}


def _complete_payment(emu, session, customer, number, email, name) -> dict:
    options = emu.store.table(SUBSCRIPTION_DATA)[session["id"]]
    if customer:
        pm = payment_methods.attach_card(emu, customer, number, email=email, name=name)
    else:
        pm = payment_methods.new_payment_method(emu, number, email=email, name=name)
    data = options.get("payment_intent_data") or {}
    ok, code, pi = payment_intents.pay(
        emu, amount=session["amount_total"], currency=session["currency"],
        customer_id=customer["id"] if customer else None, pm_id=pm["id"], description=data.get("description"),
        metadata=data.get("metadata"), capture_method=data.get("capture_method") or "automatic",
        setup_future_usage=data.get("setup_future_usage"))
    if not ok:
        return {"ok": False, "error": DECLINE_MESSAGES.get(code or "generic_decline", "Your card was declined."),
                "decline_code": code}
    session.update(payment_intent=pi["id"], payment_status="paid" if pi["status"] == "succeeded" else "unpaid")
    return {"payment_intent": pi["id"]}


def _complete_setup(emu, session, customer, number, email, name) -> dict:
    pm = payment_methods.new_payment_method(emu, number, email=email, name=name)
    try:
        seti = setup_intents.setup_intent_create(emu, {"customer": customer["id"], "payment_method": pm["id"],
                                                       "confirm": "true", "usage": "off_session"})
    except StripeError as exc:
        return {"ok": False, "error": exc.body["error"]["message"]}
    session.update(setup_intent=seti["id"], payment_status="no_payment_required")
    return {"setup_intent": seti["id"]}


def _apply_discounts(emu, session: dict, discounts: list[dict]):
    """The session's discounts ([{"coupon"} | {"promotion_code"}]) and its totals after them."""
    sources = coupons.resolve_discounts(emu, {"discounts": discounts}, currency=session["currency"])
    session["discounts"] = [{"coupon": s["coupon"] if not s["promotion_code"] else None,
                             "promotion_code": s["promotion_code"]} for s in sources]
    subtotal = session["amount_subtotal"]
    off = 0
    for source in sources:
        coupon = emu.store.objects[source["coupon"]]
        left = subtotal - off
        if coupon.get("percent_off"):
            off += min(left, (subtotal * int(round(coupon["percent_off"] * 100)) + 5000) // 10000)
        elif coupon.get("amount_off"):
            off += min(left, coupon["amount_off"])
    session["total_details"]["amount_discount"] = off
    session["amount_total"] = subtotal - off


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
                   "payment_method_configuration", "saved_payment_method_options",
                   "payment_intent_data"}
# Stripe parameters the sandbox knows but does not emulate: refused with a clear error, never dropped.
NOT_EMULATED = {"setup_intent_data", "invoice_creation", "shipping_address_collection", "custom_fields",
                "optional_items", "subscription_data[trial_end]", "subscription_data[description]",
                "subscription_data[default_tax_rates]", "subscription_data[proration_behavior]",
                "subscription_data[billing_cycle_anchor]", "subscription_data[application_fee_percent]",
                "subscription_data[on_behalf_of]", "subscription_data[transfer_data]",
                "subscription_data[invoice_settings]", "subscription_data[billing_mode]",
                "payment_intent_data[receipt_email]", "payment_intent_data[statement_descriptor]",
                "payment_intent_data[statement_descriptor_suffix]", "payment_intent_data[shipping]",
                "payment_intent_data[transfer_data]", "payment_intent_data[application_fee_amount]",
                "payment_intent_data[on_behalf_of]", "payment_intent_data[transfer_group]"}


def _refuse_not_emulated(names):
    for name in names:
        if name in NOT_EMULATED:
            raise StripeError(400, f"The Stripe sandbox does not emulate `{name}` in Checkout.", param=name)


def _line_items(emu, raw_items, mode: str):
    if mode == "setup":
        if raw_items:
            raise StripeError(400, "You cannot pass `line_items` in `setup` mode.", param="line_items")
        return [], None, None
    if not isinstance(raw_items, list) or not raw_items:
        raise StripeError(400, "Missing required param: line_items.", code="parameter_missing", param="line_items")
    items, currency, interval = [], None, None
    for index, raw in enumerate(raw_items):
        if not isinstance(raw, dict) or not raw.get("price"):
            raise StripeError(400, f"Missing required param: line_items[{index}][price].",
                              code="parameter_missing", param=f"line_items[{index}][price]")
        allow({f"line_items[{index}][{k}]": v for k, v in raw.items()},
              {f"line_items[{index}][{k}]" for k in ("price", "quantity", "adjustable_quantity", "tax_rates",
                                                     "dynamic_tax_rates")})
        price = emu.store.get("price", raw["price"], f"line_items[{index}][price]")
        quantity = as_int(raw.get("quantity", 1), f"line_items[{index}][quantity]")
        if quantity < 1:
            raise StripeError(400, "Quantity must be at least 1.", param=f"line_items[{index}][quantity]")
        if not price["active"]:
            raise StripeError(400, "The price specified is inactive. This field only accepts active prices.",
                              param=f"line_items[{index}][price]")
        if mode == "payment" and price["type"] == "recurring":
            raise StripeError(400, "You specified `payment` mode but passed a recurring price. Either switch to "
                                   "`subscription` mode or use only one-time prices.",
                              param=f"line_items[{index}][price]")
        recurring = price.get("recurring") or {}
        if currency and price["currency"] != currency or (
                interval and recurring and recurring["interval"] != interval):
            raise StripeError(400, "All prices on a subscription must have the same currency and "
                                   "recurring interval.", param=f"line_items[{index}][price]")
        currency, interval = price["currency"], recurring.get("interval") or interval
        product = emu.store.objects[price["product"]]
        items.append(shapes.checkout_line_item(item_id=shapes.new_id("li_"), price_obj=price,
                                               product_name=product["name"], quantity=quantity))
    if mode == "subscription" and not interval:
        raise StripeError(400, "You must provide at least one recurring price in `subscription` mode when using "
                               "prices.", param="line_items")
    return items, currency, interval


def _object_param(params, name: str) -> dict:
    value = params.get(name) or {}
    if not isinstance(value, dict):
        raise StripeError(400, "Invalid object", param=name)
    return value


def checkout_session_create(emu, params):
    _refuse_not_emulated(params)
    allow(params, CHECKOUT_FIELDS)
    mode = params.get("mode")
    if not mode:
        raise StripeError(400, "Missing required param: mode.", code="parameter_missing", param="mode")
    if mode not in ("payment", "setup", "subscription"):
        raise StripeError(400, "Invalid mode: must be one of payment, setup, or subscription", param="mode")
    if not params.get("success_url") and params.get("ui_mode") not in ("embedded", "custom"):
        raise StripeError(400, "Missing required param: success_url.", code="parameter_missing",
                          param="success_url")
    if params.get("customer") and params.get("customer_email"):
        raise StripeError(400, "You may only specify one of these parameters: customer, customer_email.",
                          param="customer_email")
    customer = emu.store.get("customer", params["customer"], "customer") if params.get("customer") else None
    items, currency, _ = _line_items(emu, params.get("line_items"), mode)
    if mode == "setup":
        currency = (params.get("currency") or "").lower() or None
    subscription_data = _object_param(params, "subscription_data")
    payment_intent_data = _object_param(params, "payment_intent_data")
    if subscription_data and mode != "subscription":
        raise StripeError(400, "You can only pass `subscription_data` in `subscription` mode.",
                          param="subscription_data")
    if payment_intent_data and mode != "payment":
        raise StripeError(400, "You can only pass `payment_intent_data` in `payment` mode.",
                          param="payment_intent_data")
    _refuse_not_emulated([f"subscription_data[{k}]" for k in subscription_data]
                         + [f"payment_intent_data[{k}]" for k in payment_intent_data])
    allow({f"subscription_data[{k}]": v for k, v in subscription_data.items()},
          {f"subscription_data[{k}]" for k in ("metadata", "trial_period_days", "trial_settings")})
    allow({f"payment_intent_data[{k}]": v for k, v in payment_intent_data.items()},
          {f"payment_intent_data[{k}]" for k in ("capture_method", "description", "metadata",
                                                 "setup_future_usage")})
    if payment_intent_data.get("capture_method") not in (None, "", "automatic", "automatic_async", "manual"):
        raise StripeError(400, "Invalid payment_intent_data[capture_method]",
                          param="payment_intent_data[capture_method]")
    trial_days = None
    if subscription_data.get("trial_period_days") not in (None, ""):
        trial_days = as_int(subscription_data["trial_period_days"], "subscription_data[trial_period_days]")
        if not 1 <= trial_days <= 730:
            raise StripeError(400, "subscription_data[trial_period_days] must be between 1 and 730.",
                              param="subscription_data[trial_period_days]")
    creation = params.get("customer_creation") or None
    if creation not in (None, "always", "if_required"):
        raise StripeError(400, "Invalid customer_creation: must be one of always or if_required",
                          param="customer_creation")
    if creation and mode != "payment":
        raise StripeError(400, "`customer_creation` can only be used in `payment` mode.", param="customer_creation")
    collection = params.get("payment_method_collection") or "always"
    if collection not in ("always", "if_required"):
        raise StripeError(400, "Invalid payment_method_collection", param="payment_method_collection")
    phone = _object_param(params, "phone_number_collection")
    allow({f"phone_number_collection[{k}]": v for k, v in phone.items()}, {"phone_number_collection[enabled]"})
    allow_promotions = params.get("allow_promotion_codes") not in (None, "") and as_bool(
        params["allow_promotion_codes"], "allow_promotion_codes")
    if allow_promotions and params.get("discounts"):
        raise StripeError(400, "You may only specify one of these parameters: allow_promotion_codes, discounts.",
                          param="discounts")
    now = emu.now()
    expires_at = as_int(params["expires_at"], "expires_at") if params.get("expires_at") else \
        now + emu.checkout_expires_seconds
    if not now + 1800 <= expires_at <= now + DAY:
        raise StripeError(400, "The `expires_at` timestamp must be between 30 minutes and 24 hours "
                               "from Checkout Session creation.", param="expires_at")
    session_id = "cs_test_" + shapes.new_id("", 58)
    session = shapes.checkout_session(
        session_id=session_id, created=now, expires_at=expires_at,
        url=f"{emu.base_url}/checkout/{session_id}", mode=mode, currency=currency,
        amount=sum(i["amount_total"] for i in items), success_url=params.get("success_url"),
        cancel_url=params.get("cancel_url"), customer_id=customer["id"] if customer else None,
        customer_email=params.get("customer_email") or None,
        client_reference_id=params.get("client_reference_id") or None,
        metadata=merge_metadata({}, params.get("metadata")), locale=params.get("locale"))
    session.update(allow_promotion_codes=allow_promotions or None, customer_creation=creation,
                   payment_method_collection=collection, setup_intent=None,
                   phone_number_collection={"enabled": as_bool(phone.get("enabled", "false"),
                                                               "phone_number_collection[enabled]")},
                   payment_status="no_payment_required" if mode == "setup" else "unpaid",
                   invoice_creation=None if mode != "payment" else session["invoice_creation"])
    if session["invoice_creation"]:
        session["invoice_creation"]["enabled"] = False
    if params.get("discounts"):
        _apply_discounts(emu, session, as_list(params["discounts"]))
        for item in items:  # each line's share of the discount, as Checkout shows it
            share = item["amount_subtotal"] * session["total_details"]["amount_discount"] // max(
                session["amount_subtotal"], 1)
            item.update(amount_discount=share, amount_total=item["amount_subtotal"] - share)
    emu.store.put(session)
    emu.store.table(LINE_ITEMS)[session_id] = items
    options = {"metadata": merge_metadata({}, subscription_data.get("metadata"))}
    if trial_days:
        options["trial_period_days"] = trial_days
    if isinstance(subscription_data.get("trial_settings"), dict):
        options["trial_settings"] = subscription_data["trial_settings"]
    if payment_intent_data:
        options["payment_intent_data"] = {**payment_intent_data,
                                          "metadata": merge_metadata({}, payment_intent_data.get("metadata"))}
        options["setup_future_usage"] = payment_intent_data.get("setup_future_usage")
    emu.store.table(SUBSCRIPTION_DATA)[session_id] = options
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
