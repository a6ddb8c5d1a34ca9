"""PaymentIntents: create, confirm, capture, cancel; and `charge_invoice`, the one function every
payment (API, renewal, invoice pay, checkout, hosted pages) goes through.

The card behind the payment method decides the outcome (cards.py). A card that needs 3D Secure leaves
the PaymentIntent in `requires_action`; `POST /_sandbox/payment_intents/{id}/authenticate`
(`{"outcome": "complete" | "fail"}`) plays the customer's part.
"""
from __future__ import annotations

import copy

from .. import shapes
from ..errors import StripeError, allow, metadata as merge_metadata, required
from ..params import as_bool, as_int, as_list
from ..store import created_filter, filter_equal
from . import charges, payment_methods

AUTHENTICATED = "payment_intent.authenticated"  # store table: pi id -> 3D Secure completed
INVOICE_PI = "invoice.payment_intent"  # store table: invoice id -> its PaymentIntent
PI_INVOICE = "payment_intent.invoice"  # store table: pi id -> invoice id
ON_SESSION = "payment_method.authenticated_once"  # pm id -> the customer completes 3D Secure next time
CONFIRMABLE = ("requires_payment_method", "requires_confirmation", "requires_action")
CANCELABLE = ("requires_payment_method", "requires_capture", "requires_confirmation", "requires_action",
              "processing")
ZERO_DECIMAL = {"jpy", "krw", "vnd", "clp", "pyg", "ugx", "xaf", "xof", "bif", "djf", "gnf", "kmf", "mga",
                "rwf", "vuv", "xpf"}


def build(emu, *, amount: int, currency: str, customer=None, description=None, metadata=None,
          capture_method="automatic", payment_method=None, setup_future_usage=None, receipt_email=None,
          payment_method_types=None, statement_descriptor=None, statement_descriptor_suffix=None) -> dict:
    pi = shapes.example("payment_intent")
    pi_id = shapes.new_id("pi_")
    pi.update(id=pi_id, amount=amount, amount_capturable=0, amount_received=0, created=emu.now(),
              currency=currency, customer=customer, description=description, metadata=metadata or {},
              capture_method=capture_method, confirmation_method="automatic", canceled_at=None,
              cancellation_reason=None, client_secret=f"{pi_id}_secret_{shapes.new_id('', 25)}",
              last_payment_error=None, latest_charge=None, next_action=None, payment_method=payment_method,
              payment_method_configuration_details=None, payment_method_types=payment_method_types or ["card"],
              processing=None, receipt_email=receipt_email, setup_future_usage=setup_future_usage,
              shipping=None, statement_descriptor=statement_descriptor,
              statement_descriptor_suffix=statement_descriptor_suffix, status="requires_payment_method",
              transfer_data=None, automatic_payment_methods=None, managed_payments={"enabled": False},
              amount_details={"tip": {}})
    pi["payment_method_options"] = {"card": {"installments": None, "mandate_options": None, "network": None,
                                             "request_three_d_secure": "automatic"}}
    if payment_method:
        pi["status"] = "requires_confirmation"
    return emu.store.put(pi)


def _error_for(emu, pi: dict, decline_code: str, charge_id=None) -> dict:
    err = payment_methods.decline_error(decline_code).body["error"]
    pm = emu.store.objects.get(pi["payment_method"])
    err.update(charge=charge_id, payment_method=copy.deepcopy(pm) if pm else None)
    return err


def confirm(emu, pi: dict, *, off_session: bool = False):
    """Run the payment on `pi["payment_method"]`: its card decides. Returns None on success or
    `requires_action`, the decline code on failure (the PaymentIntent holds the details)."""
    pm_id = pi["payment_method"]
    before = pi["status"]
    forced = emu.store.table(payment_methods.CHARGES_SUCCEED).get(pi["customer"]) if pi["customer"] else None
    number, card = payment_methods.card_of(emu, pm_id)
    behaviour = card.behaviour if card else "decline"
    decline_code = card.decline_code if card else "generic_decline"
    if forced is not None:  # the sandbox's fail-payments / succeed-payments switch
        behaviour, decline_code = ("succeed", None) if forced else ("decline", "generic_decline")
    if behaviour == "authenticate" and emu.store.table(ON_SESSION).pop(pm_id, None):
        emu.store.table(AUTHENTICATED)[pi["id"]] = True
    if behaviour == "authenticate" and not emu.store.table(AUTHENTICATED).get(pi["id"]):
        if off_session:
            behaviour, decline_code = "decline", "authentication_required"
        else:
            pi.update(status="requires_action", next_action={
                "type": "use_stripe_sdk",
                "use_stripe_sdk": {"type": "three_d_secure_redirect",
                                   "stripe_js": f"{emu.base_url}/_sandbox/payment_intents/{pi['id']}/authenticate",
                                   "source": pm_id}})
            if before != "requires_action":
                emu.emit("payment_intent.requires_action", pi)
            return None
    pi["next_action"] = None
    billing = (emu.store.objects.get(pm_id) or {}).get("billing_details")
    if behaviour in ("decline", "customer_fail"):
        charge = None
        if decline_code != "authentication_required":
            charge = charges.create_charge(emu, pi, pm_id, ok=False, decline_code=decline_code,
                                           billing_details=billing)
            pi["latest_charge"] = charge["id"]
        pi.update(status="requires_payment_method",
                  last_payment_error=_error_for(emu, pi, decline_code, charge and charge["id"]))
        if charge:
            emu.emit("charge.failed", charge)
        emu.emit("payment_intent.payment_failed", pi)
        return decline_code
    manual = pi["capture_method"] == "manual"
    charge = charges.create_charge(emu, pi, pm_id, ok=True, captured=not manual, billing_details=billing,
                                   authenticated=bool(emu.store.table(AUTHENTICATED).get(pi["id"])))
    pi.update(latest_charge=charge["id"], last_payment_error=None)
    if pi["setup_future_usage"] and pi["customer"]:
        pm = emu.store.objects.get(pm_id)
        if pm and pm.get("object") == "payment_method" and not pm["customer"]:
            payment_methods.attach(emu, pm, emu.store.objects[pi["customer"]], "payment_method")
    emu.emit("charge.succeeded", charge)
    if manual:
        pi.update(status="requires_capture", amount_capturable=pi["amount"])
        emu.emit("payment_intent.amount_capturable_updated", pi)
    else:
        pi.update(status="succeeded", amount_received=pi["amount"])
        emu.emit("payment_intent.succeeded", pi)
        _paid(emu, pi)
    if behaviour == "dispute" and not manual:
        charges.open_dispute(emu, charge)
    return None


def capture(emu, pi: dict, amount: int | None = None):
    if pi["status"] != "requires_capture":
        raise StripeError(400, f"This PaymentIntent could not be captured because it has a status of "
                               f"{pi['status']}. Only a PaymentIntent with one of the following statuses may be "
                               "captured: requires_capture.", code="payment_intent_unexpected_state")
    amount = pi["amount_capturable"] if amount is None else amount
    if not 0 < amount <= pi["amount_capturable"]:
        raise StripeError(400, "The amount to capture must be a positive integer no larger than the amount "
                               "capturable.", code="amount_too_large", param="amount_to_capture")
    charge = emu.store.objects[pi["latest_charge"]]
    charges.capture_charge(emu, charge, amount)
    pi.update(status="succeeded", amount_received=amount, amount_capturable=0)
    emu.emit("payment_intent.succeeded", pi)
    _paid(emu, pi)
    _, card = payment_methods.card_of(emu, pi["payment_method"])
    if card and card.behaviour == "dispute":
        charges.open_dispute(emu, charge)


def _paid(emu, pi: dict):
    """A PaymentIntent of an invoice succeeded outside the invoice's own attempt (3D Secure completed)."""
    invoice_id = emu.store.table(PI_INVOICE).get(pi["id"])
    payment = _invoice_payment(emu, invoice_id, pi["id"]) if invoice_id else None
    if payment:
        payment.update(status="paid", amount_paid=pi["amount_received"])
        payment["status_transitions"]["paid_at"] = emu.now()


def cancel(emu, pi: dict, reason=None):
    if pi["status"] not in CANCELABLE:
        raise StripeError(400, f"You cannot cancel this PaymentIntent because it has a status of {pi['status']}. "
                               "Only a PaymentIntent with one of the following statuses may be canceled: "
                               f"{', '.join(CANCELABLE)}.", code="payment_intent_unexpected_state")
    if pi["status"] == "requires_capture":
        charges.release_charge(emu, emu.store.objects[pi["latest_charge"]])
    pi.update(status="canceled", canceled_at=emu.now(), cancellation_reason=reason, amount_capturable=0,
              next_action=None)
    emu.emit("payment_intent.canceled", pi)


# -- invoices -----------------------------------------------------------------------------------------
def _invoice_payment(emu, invoice_id: str, pi_id: str) -> dict | None:
    return next((p for p in emu.store.all("invoice_payment")
                 if p["invoice"] == invoice_id and p["payment"].get("payment_intent") == pi_id), None)


def invoice_payment_method(emu, invoice: dict, pm_id: str | None = None) -> str | None:
    """The payment method an invoice is charged on: the one given, the invoice's, its subscription's,
    the customer's default, or the customer's default source card."""
    customer = emu.store.objects[invoice["customer"]]
    sub = emu.store.objects.get(invoice.get("subscription") or "") or {}
    return (pm_id or invoice.get("default_payment_method") or sub.get("default_payment_method")
            or customer["invoice_settings"]["default_payment_method"] or customer.get("default_source")
            or invoice.get("default_source"))


def charge_invoice(emu, invoice: dict, pm_id: str | None = None, *, off_session: bool = False):
    """Charge what is due on `invoice`: one PaymentIntent per invoice (reused by retries), a Charge per
    attempt, their events, and the dispute of the dispute card. Returns `(ok, error_code, pi)`:
    `(True, None, pi)` paid; `(False, "authentication_required", pi)` with `pi["status"] ==
    "requires_action"` (the caller emits invoice.payment_action_required); `(False, decline_code, pi)`
    declined; `(False, "no_payment_method", None)` nothing to charge. Marking the invoice paid or
    failed is the caller's (invoices.py)."""
    customer = emu.store.objects[invoice["customer"]]
    if invoice["amount_remaining"] <= 0:
        return True, None, None  # Stripe pays a zero invoice without a PaymentIntent
    pm_id = invoice_payment_method(emu, invoice, pm_id)
    forced = emu.store.table(payment_methods.CHARGES_SUCCEED).get(customer["id"])
    if pm_id is None and forced is None:
        return False, "no_payment_method", None
    pi = emu.store.objects.get(emu.store.table(INVOICE_PI).get(invoice["id"]) or "")
    if pi is None or pi["status"] not in CONFIRMABLE:
        sub = invoice.get("subscription")
        description = ("Subscription creation" if invoice.get("billing_reason") == "subscription_create"
                       else "Subscription update" if sub else "Payment for Invoice")
        pi = build(emu, amount=invoice["amount_remaining"], currency=invoice["currency"], customer=customer["id"],
                   description=description, payment_method=pm_id,
                   receipt_email=None)
        emu.store.table(INVOICE_PI)[invoice["id"]] = pi["id"]
        emu.store.table(PI_INVOICE)[pi["id"]] = invoice["id"]
        payment = shapes.example("invoice_payment")
        payment.update(id=shapes.new_id("inpay_"), amount_paid=None, amount_requested=pi["amount"],
                       created=emu.now(), currency=pi["currency"], invoice=invoice["id"], is_default=True,
                       livemode=False, payment={"type": "payment_intent", "payment_intent": pi["id"]},
                       status="open", status_transitions={"canceled_at": None, "paid_at": None})
        emu.store.put(payment)
        emu.emit("payment_intent.created", pi)
    elif pm_id and pi["payment_method"] != pm_id:
        pi["payment_method"] = pm_id
        emu.store.table(AUTHENTICATED).pop(pi["id"], None)
    code = confirm(emu, pi, off_session=off_session)
    if pi["status"] == "succeeded":
        return True, None, pi
    if pi["status"] == "requires_action":
        return False, "authentication_required", pi
    return False, code, pi


def pay(emu, *, amount: int, currency: str, customer_id: str | None, pm_id: str, description=None,
        metadata=None, capture_method="automatic", setup_future_usage=None, on_session: bool = True):
    """One payment outside invoices (Checkout in payment mode): a PaymentIntent created and confirmed on
    `pm_id`, its Charge and events. Returns `(ok, error_code, pi)` like `charge_invoice`."""
    pi = build(emu, amount=amount, currency=currency, customer=customer_id, description=description,
               metadata=metadata, capture_method=capture_method, payment_method=pm_id,
               setup_future_usage=setup_future_usage)
    emu.emit("payment_intent.created", pi)
    if on_session:
        customer_present(emu, pm_id)
    code = confirm(emu, pi)
    if pi["status"] in ("succeeded", "requires_capture"):
        return True, None, pi
    return False, code or "authentication_required", pi


def invoice_voided(emu, invoice: dict):
    """A voided invoice cancels its unpaid PaymentIntent (`void_invoice`) and its invoice payment."""
    pi = invoice_payment_intent(emu, invoice["id"])
    if pi is None or pi["status"] not in CANCELABLE:
        return
    payment = _invoice_payment(emu, invoice["id"], pi["id"])
    cancel(emu, pi, "void_invoice")
    if payment:
        payment["status"] = "canceled"
        payment["status_transitions"]["canceled_at"] = emu.now()


def customer_present(emu, pm_id: str):
    """The customer is on a hosted page and completes 3D Secure for the next payment on `pm_id`."""
    emu.store.table(ON_SESSION)[pm_id] = True


def invoice_payment_intent(emu, invoice_id: str) -> dict | None:
    """The invoice's PaymentIntent, if it was ever charged."""
    return emu.store.objects.get(emu.store.table(INVOICE_PI).get(invoice_id) or "")


def authenticate(emu, pi_id: str, outcome: str) -> dict:
    """Complete (or fail) the 3D Secure step of a PaymentIntent in `requires_action`. When it pays an
    invoice, the invoice is paid (invoices.py)."""
    pi = emu.store.get("payment_intent", pi_id)
    if pi["status"] != "requires_action":
        raise StripeError(400, f"PaymentIntent {pi_id} does not need authentication (status {pi['status']}).")
    if outcome not in ("complete", "fail"):
        raise ValueError("outcome must be 'complete' or 'fail'")
    if outcome == "fail":
        pi.update(status="requires_payment_method", next_action=None, last_payment_error={
            **_error_for(emu, pi, "authentication_required"), "type": "invalid_request_error",
            "code": "payment_intent_authentication_failure", "decline_code": None,
            "message": "The provided PaymentMethod has failed authentication. You can provide payment_method_data "
                       "or a new PaymentMethod to attempt to fulfill this PaymentIntent again."})
        emu.emit("payment_intent.payment_failed", pi)
        return pi
    emu.store.table(AUTHENTICATED)[pi_id] = True
    confirm(emu, pi)
    invoice_id = emu.store.table(PI_INVOICE).get(pi_id)
    if pi["status"] == "succeeded" and invoice_id:
        from . import invoices  # invoices imports this module

        invoice = emu.store.objects[invoice_id]
        if invoice["status"] in ("open", "uncollectible"):
            from . import subscriptions

            invoices.mark_invoice_paid(emu, invoice)
            subscriptions.invoice_paid(emu, invoice)
    return pi


# -- the API --------------------------------------------------------------------------------------
PI_FIELDS = {"amount", "currency", "customer", "description", "metadata", "payment_method", "confirm",
             "capture_method", "confirmation_method", "off_session", "setup_future_usage", "receipt_email",
             "payment_method_types", "automatic_payment_methods", "statement_descriptor",
             "statement_descriptor_suffix", "return_url", "error_on_requires_action", "use_stripe_sdk",
             "payment_method_options", "payment_method_data", "shipping", "mandate", "mandate_data",
             "transfer_group", "on_behalf_of", "application_fee_amount", "transfer_data",
             "payment_method_configuration", "radar_options", "excluded_payment_method_types",
             "confirmation_token", "customer_account"}
UPDATE_FIELDS = {"amount", "currency", "customer", "description", "metadata", "payment_method",
                 "capture_method", "setup_future_usage", "receipt_email", "payment_method_types",
                 "statement_descriptor", "statement_descriptor_suffix", "shipping", "payment_method_options",
                 "payment_method_data", "transfer_group", "application_fee_amount", "transfer_data",
                 "payment_method_configuration", "excluded_payment_method_types"}
CONFIRM_FIELDS = {"payment_method", "return_url", "off_session", "error_on_requires_action", "use_stripe_sdk",
                  "payment_method_options", "payment_method_data", "receipt_email", "setup_future_usage",
                  "shipping", "mandate", "mandate_data", "capture_method", "payment_method_types",
                  "radar_options", "confirmation_token"}


CONNECT = ("on_behalf_of", "application_fee_amount", "transfer_data")


def _no_connect(params):
    for key in CONNECT:
        if params.get(key) not in (None, ""):
            raise StripeError(400, f"The Stripe sandbox account is not a Connect platform: `{key}` is not emulated.",
                              param=key)


def _shipping(pi: dict, params: dict):
    if "shipping" in params:
        shipping = params["shipping"]
        if shipping not in (None, "") and not isinstance(shipping, dict):
            raise StripeError(400, "Invalid object", param="shipping")
        pi["shipping"] = {"address": shipping.get("address"), "name": shipping.get("name"),
                          "phone": shipping.get("phone"), "carrier": shipping.get("carrier"),
                          "tracking_number": shipping.get("tracking_number")} if shipping else None
    if "transfer_group" in params:
        pi["transfer_group"] = params["transfer_group"] or None


def _amount(params, currency) -> int:
    amount = as_int(params["amount"], "amount")
    minimum = 50 if currency not in ZERO_DECIMAL else 1
    if amount < minimum:
        raise StripeError(400, f"Amount must be at least {minimum / 100:.2f} {currency}" if minimum == 50 else
                               "Amount must be at least 1", code="amount_too_small", param="amount")
    if amount > 99999999:
        raise StripeError(400, "Amount must be no more than $999,999.99", code="amount_too_large", param="amount")
    return amount


def _customer(emu, params):
    return emu.store.get("customer", params["customer"], "customer")["id"] if params.get("customer") else None


def _payment_method(emu, pi: dict, params: dict):
    """Apply `payment_method` / `payment_method_data` from `params` to the PaymentIntent."""
    if params.get("payment_method_data"):
        data = params["payment_method_data"]
        if not isinstance(data, dict):
            raise StripeError(400, "Invalid object", param="payment_method_data")
        allow(data, {"type", "card", "billing_details", "metadata", "allow_redisplay"})
        pm = payment_methods.payment_method_create(emu, dict(data))
    elif params.get("payment_method"):
        pm = payment_methods.resolve(emu, params["payment_method"], "payment_method")
    else:
        return
    if pm["customer"] and pm["customer"] != pi["customer"]:
        raise StripeError(400, "The provided PaymentMethod was previously used with a PaymentIntent without "
                               "Customer attachment, shared with a connected account without Customer attachment, "
                               "or was detached from a Customer. It may not be used again. To use a PaymentMethod "
                               "multiple times, you must attach it to a Customer first."
                          if not pi["customer"] else
                          "The provided PaymentMethod belongs to a different Customer.",
                          param="payment_method")
    if pm["id"] != pi["payment_method"]:
        emu.store.table(AUTHENTICATED).pop(pi["id"], None)
    pi["payment_method"] = pm["id"]
    if pi["status"] == "requires_payment_method":
        pi["status"] = "requires_confirmation"


def _run_confirm(emu, pi: dict, params: dict) -> dict:
    off_session = as_bool(params.get("off_session", "false"), "off_session") \
        if params.get("off_session") not in ("one_off", "recurring") else True
    if not pi["payment_method"]:
        raise StripeError(400, "You cannot confirm this PaymentIntent because it's missing a payment method. To "
                               "confirm the PaymentIntent" + (f" with {pi['customer']}" if pi["customer"] else "") +
                               ", specify a payment method" + (" attached to this customer along with the "
                                                               "customer ID." if pi["customer"] else "."),
                          code="payment_intent_unexpected_state")
    code = confirm(emu, pi, off_session=off_session)
    if code:
        error = payment_methods.decline_error(code, extra={
            "payment_intent": copy.deepcopy(pi), "charge": pi["latest_charge"] if code != "authentication_required"
            else None, "payment_method": copy.deepcopy(emu.store.objects.get(pi["payment_method"]))})
        raise error
    if pi["status"] == "requires_action" and as_bool(params.get("error_on_requires_action", "false"),
                                                     "error_on_requires_action"):
        raise payment_methods.decline_error("authentication_required",
                                            extra={"payment_intent": copy.deepcopy(pi)})
    return pi


def payment_intent_create(emu, params):
    allow(params, PI_FIELDS)
    _no_connect(params)
    required(params, "amount", "currency")
    currency = params["currency"].lower()
    amount = _amount(params, currency)
    capture_method = params.get("capture_method") or "automatic"
    if capture_method not in ("automatic", "automatic_async", "manual"):
        raise StripeError(400, "Invalid capture_method: must be one of automatic, automatic_async, or manual",
                          param="capture_method")
    sfu = params.get("setup_future_usage") or None
    if sfu not in (None, "on_session", "off_session"):
        raise StripeError(400, "Invalid setup_future_usage: must be one of on_session or off_session",
                          param="setup_future_usage")
    types = as_list(params.get("payment_method_types")) or ["card"]
    if types != ["card"]:
        raise StripeError(400, f"The Stripe sandbox supports only card payments, not {types}.",
                          param="payment_method_types")
    pi = build(emu, amount=amount, currency=currency, customer=_customer(emu, params),
               description=params.get("description") or None, metadata=merge_metadata({}, params.get("metadata")),
               capture_method=capture_method, setup_future_usage=sfu,
               receipt_email=params.get("receipt_email") or None, statement_descriptor=params.get(
                   "statement_descriptor") or None,
               statement_descriptor_suffix=params.get("statement_descriptor_suffix") or None)
    if isinstance(params.get("automatic_payment_methods"), dict):
        pi["automatic_payment_methods"] = {"enabled": as_bool(params["automatic_payment_methods"].get(
            "enabled", "false"), "automatic_payment_methods[enabled]"), "allow_redirects": "always"}
    if params.get("confirmation_method") == "manual":
        pi["confirmation_method"] = "manual"
    _shipping(pi, params)
    _payment_method(emu, pi, params)
    emu.emit("payment_intent.created", pi)
    if as_bool(params.get("confirm", "false"), "confirm"):
        return _run_confirm(emu, pi, params)
    if params.get("off_session") not in (None, ""):
        raise StripeError(400, "You may only specify `off_session` when `confirm=true`.", param="off_session")
    return pi


def payment_intent_list(emu, params):
    items = filter_equal(emu.store.newest_first("payment_intent"), params, ("customer",))
    return emu.store.page(created_filter(items, params.get("created")), params, "/v1/payment_intents")


def payment_intent_search(emu, params):
    return emu.store.search("payment_intent", params, {"customer", "status", "amount", "currency", "created"},
                            "/v1/payment_intents/search")


def payment_intent_retrieve(emu, params, id):
    params.pop("client_secret", None)
    return emu.store.get("payment_intent", id)


def payment_intent_update(emu, params, id):
    allow(params, UPDATE_FIELDS)
    _no_connect(params)
    pi = emu.store.get("payment_intent", id)
    if pi["status"] in ("succeeded", "canceled", "processing") and set(params) - {"metadata", "description",
                                                                                  "receipt_email", "shipping"}:
        raise StripeError(400, f"This PaymentIntent's {sorted(set(params))[0]} could not be updated because it has "
                               f"a status of {pi['status']}.", code="payment_intent_unexpected_state")
    before = copy.deepcopy(pi)
    if "currency" in params:
        pi["currency"] = params["currency"].lower()
    if "amount" in params:
        pi["amount"] = _amount(params, pi["currency"])
    if "customer" in params:
        pi["customer"] = _customer(emu, params)
    for key in ("description", "receipt_email", "statement_descriptor", "statement_descriptor_suffix",
                "setup_future_usage"):
        if key in params:
            pi[key] = params[key] or None
    if params.get("capture_method"):
        pi["capture_method"] = params["capture_method"]
    if "metadata" in params:
        pi["metadata"] = merge_metadata(pi["metadata"], params["metadata"])
    _shipping(pi, params)
    _payment_method(emu, pi, params)
    if pi["status"] == "requires_action" and pi["payment_method"] != before["payment_method"]:
        pi.update(status="requires_confirmation", next_action=None)
    previous = {k: before[k] for k in before if before[k] != pi[k]}
    if previous:
        emu.emit("payment_intent.updated", pi, previous)
    return pi


def payment_intent_confirm(emu, params, id):
    allow(params, CONFIRM_FIELDS | {"client_secret"})
    params.pop("client_secret", None)
    pi = emu.store.get("payment_intent", id)
    if pi["status"] not in CONFIRMABLE:
        raise StripeError(400, f"You cannot confirm this PaymentIntent because it has a status of {pi['status']}. "
                               "Only a PaymentIntent with one of the following statuses may be confirmed: "
                               "requires_confirmation, requires_payment_method, requires_action.",
                          code="payment_intent_unexpected_state")
    for key in ("receipt_email", "setup_future_usage"):
        if key in params:
            pi[key] = params[key] or None
    _payment_method(emu, pi, params)
    return _run_confirm(emu, pi, params)


def payment_intent_capture(emu, params, id):
    allow(params, {"amount_to_capture", "metadata", "final_capture", "application_fee_amount",
                   "statement_descriptor", "statement_descriptor_suffix", "transfer_data"})
    _no_connect(params)
    pi = emu.store.get("payment_intent", id)
    if "metadata" in params:
        pi["metadata"] = merge_metadata(pi["metadata"], params["metadata"])
    amount = params.get("amount_to_capture")
    capture(emu, pi, None if amount in (None, "") else as_int(amount, "amount_to_capture"))
    return pi


def payment_intent_cancel(emu, params, id):
    allow(params, {"cancellation_reason"})
    pi = emu.store.get("payment_intent", id)
    reason = params.get("cancellation_reason") or None
    if reason not in (None, "duplicate", "fraudulent", "requested_by_customer", "abandoned"):
        raise StripeError(400, "Invalid cancellation_reason: must be one of duplicate, fraudulent, "
                               "requested_by_customer, or abandoned", param="cancellation_reason")
    cancel(emu, pi, reason)
    return pi


def invoice_payment_list(emu, params):
    items = emu.store.newest_first("invoice_payment")
    if "invoice" in params:
        invoice = params.pop("invoice")
        items = [p for p in items if p["invoice"] == invoice]
    payment = params.pop("payment", None)
    if isinstance(payment, dict) and payment.get("payment_intent"):
        items = [p for p in items if p["payment"].get("payment_intent") == payment["payment_intent"]]
    items = filter_equal(items, params, ("status",))
    return emu.store.page(items, params, "/v1/invoice_payments")


def invoice_payment_retrieve(emu, params, id):
    return emu.store.get("invoice_payment", id)


def register(api):
    api.add("POST", "/v1/payment_intents", payment_intent_create)
    api.add("GET", "/v1/payment_intents", payment_intent_list)
    api.add("GET", "/v1/payment_intents/search", payment_intent_search)
    api.add("GET", "/v1/payment_intents/{id}", payment_intent_retrieve)
    api.add("POST", "/v1/payment_intents/{id}", payment_intent_update)
    api.add("POST", "/v1/payment_intents/{id}/confirm", payment_intent_confirm)
    api.add("POST", "/v1/payment_intents/{id}/capture", payment_intent_capture)
    api.add("POST", "/v1/payment_intents/{id}/cancel", payment_intent_cancel)
    api.add("GET", "/v1/invoice_payments", invoice_payment_list)
    api.add("GET", "/v1/invoice_payments/{id}", invoice_payment_retrieve)
    api.virtual("invoice", "payments", lambda emu, invoice: {
        "object": "list", "data": copy.deepcopy([p for p in emu.store.newest_first("invoice_payment")
                                                 if p["invoice"] == invoice["id"]]),
        "has_more": False, "url": f"/v1/invoice_payments?invoice={invoice['id']}"})
