"""Payment methods (cards), Stripe's magic ids (`pm_card_visa`...), tokens (`tok_visa`) and customer
source cards, and the card behind each of them that decides payments (see cards.py)."""
from __future__ import annotations

import copy
import hashlib

from .. import shapes
from ..cards import CARDS, DECLINE_MESSAGES, ERROR_CODES, card_digits, luhn_ok, magic_number
from ..errors import StripeError, allow, metadata as merge_metadata, required
from ..params import as_int

CARD_NUMBERS = "payment_method.card_numbers"  # store table: pm or card id -> test card number
CHARGES_SUCCEED = "customer.charges_succeed"  # customer id -> forced outcome (set_card)


def card_of(emu, pm_id: str | None):
    """The test card behind a payment method or source card id, or None."""
    number = emu.store.table(CARD_NUMBERS).get(pm_id) if pm_id else None
    return (number, CARDS[number]) if number in CARDS else (number, None)


def decline_error(decline_code: str, param=None, extra=None) -> StripeError:
    return StripeError(402, DECLINE_MESSAGES.get(decline_code, "Your card was declined."), type="card_error",
                       code=ERROR_CODES.get(decline_code, "card_declined"), decline_code=decline_code,
                       param=param, extra=extra)


def new_payment_method(emu, number: str, *, customer_id=None, email=None, name=None, exp_month=12,
                       exp_year=2034, metadata=None) -> dict:
    pm = shapes.payment_method(pm_id=shapes.new_id("pm_"), number=number, created=emu.now(),
                               customer_id=customer_id, email=email, name=name, exp_month=exp_month,
                               exp_year=exp_year)
    card = CARDS.get(number)
    if card:
        pm["card"].update(funding=card.funding, country=card.country, brand=card.brand,
                          display_brand=card.brand)
        pm["card"]["networks"]["available"] = [card.brand]
    pm["metadata"] = metadata or {}
    pm["allow_redisplay"] = "unspecified"
    emu.store.put(pm)
    emu.store.table(CARD_NUMBERS)[pm["id"]] = number
    return pm


def attach_card(emu, customer: dict, number: str, *, email=None, name=None) -> dict:
    """A new card payment method attached to the customer (hosted pages; no decline check)."""
    pm = new_payment_method(emu, number, customer_id=customer["id"], email=email, name=name)
    pm["allow_redisplay"] = "always"
    emu.emit("payment_method.attached", pm)
    return pm


def resolve(emu, pm_id, param: str) -> dict:
    """A stored payment method, or a fresh one for a magic id (`pm_card_visa`) as Stripe makes."""
    number = magic_number(pm_id)
    if number and pm_id.startswith("pm_card_"):
        return new_payment_method(emu, number)
    return emu.store.get("payment_method", pm_id, param)


def attach(emu, pm: dict, customer: dict, param: str = "customer") -> dict:
    """Attach with Stripe's checks: a card that declines cannot be attached."""
    if pm["customer"] == customer["id"]:
        return pm
    if pm["customer"]:
        raise StripeError(400, "The payment method you provided has already been attached to a customer.",
                          code="payment_method_unexpected_state", param=param)
    _, card = card_of(emu, pm["id"])
    if card and card.behaviour == "decline":
        raise decline_error(card.decline_code, param=param)
    pm["customer"] = customer["id"]
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
    """(an off-session charge succeeds, decline code) on `pm_id` or the customer's default; it
    creates nothing (payment_intents.charge_invoice does the charging)."""
    override = emu.store.table(CHARGES_SUCCEED).get(customer["id"])
    if override is not None:
        return override, None if override else "generic_decline"
    pm_id = pm_id or customer["invoice_settings"]["default_payment_method"] or customer.get("default_source")
    number, card = card_of(emu, pm_id)
    if number is None:
        return False, "no_payment_method"
    if card is None:
        return False, "generic_decline"
    if card.behaviour in ("decline", "customer_fail"):
        return False, card.decline_code
    if card.behaviour == "authenticate":
        return False, "authentication_required"
    return True, None


# -- the API -------------------------------------------------------------------------------------
PM_FIELDS = {"type", "card", "billing_details", "metadata", "allow_redisplay", "customer",
             "payment_method"}


def payment_method_create(emu, params):
    allow(params, PM_FIELDS)
    if params.get("customer") or params.get("payment_method"):
        raise StripeError(400, "Cloning a payment method to a connected account (customer, payment_method) "
                               "is not supported by the Stripe sandbox.", param="customer")
    required(params, "type")
    if params["type"] != "card":
        raise StripeError(400, f"The Stripe sandbox supports only card payment methods, not "
                               f"'{params['type']}'.", param="type")
    card = params.get("card")
    if not isinstance(card, dict):
        raise StripeError(400, "Missing required param: card.", code="parameter_missing", param="card")
    allow(card, {"number", "exp_month", "exp_year", "cvc", "token"})
    if card.get("token"):
        number = token_number(emu, card["token"], "card[token]")
        exp_month, exp_year = 12, 2034
    else:
        number = card_digits(card.get("number"))
        if not number:
            raise StripeError(400, "Missing required param: card[number].", code="parameter_missing",
                              param="card[number]")
        if not luhn_ok(number):
            raise StripeError(402, "Your card number is incorrect.", type="card_error",
                              code="incorrect_number", param="card[number]")
        if number not in CARDS:
            raise StripeError(402, "Your card was declined. Your request was in test mode, but used a non test "
                                   "card. For a list of valid test cards, visit: https://stripe.com/docs/testing.",
                              type="card_error", code="card_declined", param="card[number]",
                              decline_code="test_mode_live_card")
        required(card, "exp_month", "exp_year")
        exp_month = as_int(card["exp_month"], "card[exp_month]")
        exp_year = as_int(card["exp_year"], "card[exp_year]")
        if not 1 <= exp_month <= 12:
            raise StripeError(402, "Your card's expiration month is invalid.", type="card_error",
                              code="invalid_expiry_month", param="card[exp_month]")
        if exp_year < 100:
            exp_year += 2000
        if exp_year < 2025:
            raise StripeError(402, "Your card's expiration year is invalid.", type="card_error",
                              code="invalid_expiry_year", param="card[exp_year]")
    pm = new_payment_method(emu, number, exp_month=exp_month, exp_year=exp_year,
                            metadata=merge_metadata({}, params.get("metadata")))
    update_billing_details(pm, params.get("billing_details"))
    if params.get("allow_redisplay"):
        pm["allow_redisplay"] = params["allow_redisplay"]
    return pm


def token_number(emu, token: str, param: str) -> str:
    number = magic_number(token) if token.startswith("tok_") else None
    if number is None:
        raise StripeError(404, f"No such token: '{token}'", code="resource_missing", param=param)
    return number


def update_billing_details(pm: dict, details):
    if details in (None, ""):
        return
    if not isinstance(details, dict):
        raise StripeError(400, "Invalid object", param="billing_details")
    allow(details, {"address", "email", "name", "phone", "tax_id"})
    for key in ("email", "name", "phone", "tax_id"):
        if key in details:
            pm["billing_details"][key] = details[key] or None
    address = details.get("address")
    if isinstance(address, dict):
        allow(address, {"city", "country", "line1", "line2", "postal_code", "state"})
        for key, value in address.items():
            pm["billing_details"]["address"][key] = value or None


def payment_method_retrieve(emu, params, id):
    card = emu.store.objects.get(id)
    if card and card.get("object") == "card" and not card.get("deleted"):
        # Stripe shows a customer's source card as a PaymentMethod under the card's id.
        view = shapes.payment_method(pm_id=id, number=emu.store.table(CARD_NUMBERS)[id], created=emu.now(),
                                     customer_id=card["customer"], name=card["name"])
        view["card"].update(brand=LEGACY_BRANDS_REVERSE.get(card["brand"], "unknown"), funding=card["funding"],
                            country=card["country"])
        view["metadata"] = dict(card["metadata"])
        return view
    return emu.store.get("payment_method", id)


def payment_method_update(emu, params, id):
    allow(params, {"billing_details", "card", "metadata", "allow_redisplay"})
    pm = emu.store.get("payment_method", id)
    before = copy.deepcopy(pm)
    update_billing_details(pm, params.get("billing_details"))
    card = params.get("card")
    if isinstance(card, dict):
        allow(card, {"exp_month", "exp_year", "networks"})
        if "exp_month" in card:
            month = as_int(card["exp_month"], "card[exp_month]")
            if not 1 <= month <= 12:
                raise StripeError(402, "Your card's expiration month is invalid.", type="card_error",
                                  code="invalid_expiry_month", param="card[exp_month]")
            pm["card"]["exp_month"] = month
        if "exp_year" in card:
            pm["card"]["exp_year"] = as_int(card["exp_year"], "card[exp_year]")
    if "metadata" in params:
        pm["metadata"] = merge_metadata(pm["metadata"], params["metadata"])
    if params.get("allow_redisplay"):
        pm["allow_redisplay"] = params["allow_redisplay"]
    previous = {k: before[k] for k in before if before[k] != pm[k]}
    if previous:
        emu.emit("payment_method.updated", pm, previous)
    return pm


def payment_method_attach(emu, params, id):
    allow(params, {"customer", "customer_account"})
    required(params, "customer")
    customer = emu.store.get("customer", params["customer"], "customer")
    pm = resolve(emu, id, "payment_method")
    return attach(emu, pm, customer)


def payment_method_detach(emu, params, id):
    allow(params, set())
    pm = emu.store.get("payment_method", id)
    if not pm["customer"]:
        raise StripeError(400, "The payment method you provided is not attached to a customer so detachment "
                               "is impossible.", code="payment_method_unexpected_state")
    customer = emu.store.objects.get(pm["customer"])
    previous = {"customer": pm["customer"]}
    pm["customer"] = None
    if customer and customer["invoice_settings"]["default_payment_method"] == id:
        old = copy.deepcopy(customer["invoice_settings"])
        customer["invoice_settings"]["default_payment_method"] = None
        emu.emit("customer.updated", customer, {"invoice_settings": old})
    emu.emit("payment_method.detached", pm, previous)
    return pm


def customer_payment_methods(emu, params, id):
    emu.store.get("customer", id)
    params["customer"] = id
    return payment_method_list(emu, params, url=f"/v1/customers/{id}/payment_methods")


def customer_payment_method(emu, params, id, pm):
    emu.store.get("customer", id)
    obj = emu.store.get("payment_method", pm)
    if obj["customer"] != id:
        raise StripeError(404, f"No such PaymentMethod: '{pm}'", code="resource_missing", param="payment_method")
    return obj


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


# -- customer source cards (`source=tok_visa`) ------------------------------------------------------
LEGACY_BRANDS = {"visa": "Visa", "mastercard": "MasterCard", "amex": "American Express"}  # `card` objects
LEGACY_BRANDS_REVERSE = {v: k for k, v in LEGACY_BRANDS.items()}


def source_card(emu, customer: dict, token: str, param: str = "source") -> dict:
    """A `card` object on the customer from a token; a declining card is refused as Stripe does."""
    number = token_number(emu, token, param)
    card = CARDS[number]
    if card.behaviour == "decline":
        raise decline_error(card.decline_code, param=param)
    obj = shapes.example("card")
    obj.update(id=shapes.new_id("card_"), customer=customer["id"], brand=LEGACY_BRANDS[card.brand],
               last4=number[-4:], exp_month=12, exp_year=2034, funding=card.funding, country=card.country,
               name=None, metadata={}, cvc_check="pass",
               fingerprint=hashlib.sha256(number.encode()).hexdigest()[:16])
    emu.store.put(obj)
    emu.store.table(CARD_NUMBERS)[obj["id"]] = number
    emu.emit("customer.source.created", obj)
    return obj


def customer_sources(emu, params, id):
    emu.store.get("customer", id)
    items = [c for c in emu.store.newest_first("card") if c.get("customer") == id]
    if params.pop("object", "card") != "card":
        items = []
    return emu.store.page(items, params, f"/v1/customers/{id}/sources")


def customer_source_create(emu, params, id):
    allow(params, {"source", "metadata", "validate"})
    required(params, "source")
    customer = emu.store.get("customer", id)
    card = source_card(emu, customer, params["source"])
    card["metadata"] = merge_metadata({}, params.get("metadata"))
    if not customer["default_source"]:
        customer["default_source"] = card["id"]
        emu.emit("customer.updated", customer, {"default_source": None})
    return card


def customer_source_retrieve(emu, params, id, source):
    emu.store.get("customer", id)
    card = emu.store.objects.get(source)
    if not card or card.get("object") != "card" or card.get("deleted") or card["customer"] != id:
        raise StripeError(404, f"No such source: '{source}'", code="resource_missing", param="id")
    return card


def customer_source_delete(emu, params, id, source):
    customer = emu.store.get("customer", id)
    card = customer_source_retrieve(emu, params, id, source)
    emu.emit("customer.source.deleted", card)
    if customer["default_source"] == source:
        customer["default_source"] = next((c["id"] for c in emu.store.newest_first("card")
                                           if c["customer"] == id and c["id"] != source), None)
        emu.emit("customer.updated", customer, {"default_source": source})
    emu.store.objects[source] = {"id": source, "object": "card", "deleted": True}
    return emu.store.objects[source]


def register(api):
    api.add("POST", "/v1/payment_methods", payment_method_create)
    api.add("GET", "/v1/payment_methods", payment_method_list)
    api.add("GET", "/v1/payment_methods/{id}", payment_method_retrieve)
    api.add("POST", "/v1/payment_methods/{id}", payment_method_update)
    api.add("POST", "/v1/payment_methods/{id}/attach", payment_method_attach)
    api.add("POST", "/v1/payment_methods/{id}/detach", payment_method_detach)
    api.add("GET", "/v1/customers/{id}/payment_methods", customer_payment_methods)
    api.add("GET", "/v1/customers/{id}/payment_methods/{pm}", customer_payment_method)
    api.add("GET", "/v1/customers/{id}/sources", customer_sources)
    api.add("POST", "/v1/customers/{id}/sources", customer_source_create)
    api.add("GET", "/v1/customers/{id}/sources/{source}", customer_source_retrieve)
    api.add("DELETE", "/v1/customers/{id}/sources/{source}", customer_source_delete)
