"""SetupIntents: save a card for later. Confirming attaches the payment method to the customer; the
card decides (a declining card fails the setup, a 3D Secure card needs action:
`POST /_sandbox/setup_intents/{id}/authenticate {"outcome": "complete" | "fail"}`)."""
from __future__ import annotations

import copy

from .. import shapes
from ..errors import StripeError, allow, metadata as merge_metadata
from ..params import as_bool, as_list
from ..store import created_filter, filter_equal
from . import payment_methods

AUTHENTICATED = "setup_intent.authenticated"  # store table: seti id -> 3D Secure completed
CONFIRMABLE = ("requires_payment_method", "requires_confirmation", "requires_action")


def _set_payment_method(emu, seti: dict, params: dict):
    if params.get("payment_method_data"):
        data = params["payment_method_data"]
        if not isinstance(data, dict):
            raise StripeError(400, "Invalid object", param="payment_method_data")
        pm = payment_methods.payment_method_create(emu, dict(data))
    elif params.get("payment_method"):
        pm = payment_methods.resolve(emu, params["payment_method"], "payment_method")
    else:
        return
    if pm["customer"] and pm["customer"] != seti["customer"]:
        raise StripeError(400, "The provided PaymentMethod belongs to a different Customer.", param="payment_method")
    if pm["id"] != seti["payment_method"]:
        emu.store.table(AUTHENTICATED).pop(seti["id"], None)
    seti["payment_method"] = pm["id"]
    if seti["status"] == "requires_payment_method":
        seti["status"] = "requires_confirmation"


def confirm(emu, seti: dict):
    """The card decides: succeeded (attached to the customer), requires_action, or setup failed (402)."""
    pm_id = seti["payment_method"]
    _, card = payment_methods.card_of(emu, pm_id)
    behaviour = card.behaviour if card else "decline"
    if behaviour == "authenticate" and not emu.store.table(AUTHENTICATED).get(seti["id"]):
        before = seti["status"]
        seti.update(status="requires_action", next_action={
            "type": "use_stripe_sdk",
            "use_stripe_sdk": {"type": "three_d_secure_redirect",
                               "stripe_js": f"{emu.base_url}/_sandbox/setup_intents/{seti['id']}/authenticate",
                               "source": pm_id}})
        if before != "requires_action":
            emu.emit("setup_intent.requires_action", seti)
        return
    seti["next_action"] = None
    if behaviour == "decline":
        error = payment_methods.decline_error(card.decline_code if card else "generic_decline")
        pm = emu.store.objects.get(pm_id)
        seti.update(status="requires_payment_method",
                    last_setup_error={**error.body["error"], "payment_method": copy.deepcopy(pm)})
        emu.emit("setup_intent.setup_failed", seti)
        error.body["error"]["setup_intent"] = copy.deepcopy(seti)
        raise error
    if seti["customer"]:
        pm = emu.store.objects[pm_id]
        payment_methods.attach(emu, pm, emu.store.objects[seti["customer"]], "payment_method")
    seti.update(status="succeeded", last_setup_error=None)
    emu.emit("setup_intent.succeeded", seti)


def authenticate(emu, seti_id: str, outcome: str) -> dict:
    seti = emu.store.get("setup_intent", seti_id)
    if seti["status"] != "requires_action":
        raise StripeError(400, f"SetupIntent {seti_id} does not need authentication (status {seti['status']}).")
    if outcome not in ("complete", "fail"):
        raise ValueError("outcome must be 'complete' or 'fail'")
    if outcome == "fail":
        seti.update(status="requires_payment_method", next_action=None, last_setup_error={
            "type": "invalid_request_error", "code": "setup_intent_authentication_failure",
            "doc_url": "https://stripe.com/docs/error-codes/setup-intent-authentication-failure",
            "message": "The latest attempt to set up the payment method has failed because authentication failed.",
            "payment_method": copy.deepcopy(emu.store.objects.get(seti["payment_method"]))})
        emu.emit("setup_intent.setup_failed", seti)
        return seti
    emu.store.table(AUTHENTICATED)[seti_id] = True
    confirm(emu, seti)
    return seti


FIELDS = {"customer", "payment_method", "confirm", "usage", "payment_method_types", "metadata", "description",
          "automatic_payment_methods", "return_url", "single_use", "on_behalf_of", "attach_to_self",
          "flow_directions", "payment_method_options", "mandate_data", "use_stripe_sdk", "payment_method_data",
          "payment_method_configuration", "confirmation_token", "excluded_payment_method_types",
          "customer_account"}
UPDATE_FIELDS = {"customer", "payment_method", "metadata", "description", "payment_method_types",
                 "payment_method_options", "payment_method_data", "flow_directions", "attach_to_self",
                 "payment_method_configuration", "excluded_payment_method_types"}
CONFIRM_FIELDS = {"payment_method", "return_url", "mandate_data", "use_stripe_sdk", "payment_method_options",
                  "payment_method_data", "confirmation_token", "client_secret"}


def setup_intent_create(emu, params):
    allow(params, FIELDS)
    usage = params.get("usage") or "off_session"
    if usage not in ("on_session", "off_session"):
        raise StripeError(400, "Invalid usage: must be one of on_session or off_session", param="usage")
    types = as_list(params.get("payment_method_types")) or ["card"]
    if types != ["card"]:
        raise StripeError(400, f"The Stripe sandbox supports only card setups, not {types}.",
                          param="payment_method_types")
    customer = emu.store.get("customer", params["customer"], "customer")["id"] if params.get("customer") else None
    seti = shapes.example("setup_intent")
    seti_id = shapes.new_id("seti_")
    seti.update(id=seti_id, client_secret=f"{seti_id}_secret_{shapes.new_id('', 32)}", created=emu.now(),
                customer=customer, description=params.get("description") or None,
                metadata=merge_metadata({}, params.get("metadata")), usage=usage, payment_method=None,
                payment_method_types=types, last_setup_error=None, next_action=None, latest_attempt=None,
                payment_method_configuration_details=None, status="requires_payment_method",
                cancellation_reason=None, flow_directions=None, mandate=None, single_use_mandate=None,
                automatic_payment_methods=None)
    seti["payment_method_options"] = {"card": {"mandate_options": None, "network": None,
                                               "request_three_d_secure": "automatic"}}
    if isinstance(params.get("automatic_payment_methods"), dict):
        seti["automatic_payment_methods"] = {"enabled": as_bool(params["automatic_payment_methods"].get(
            "enabled", "false"), "automatic_payment_methods[enabled]"), "allow_redirects": "always"}
    _set_payment_method(emu, seti, params)
    emu.store.put(seti)
    emu.emit("setup_intent.created", seti)
    if as_bool(params.get("confirm", "false"), "confirm"):
        if not seti["payment_method"]:
            raise StripeError(400, "You cannot confirm this SetupIntent because it's missing a payment method.",
                              code="setup_intent_unexpected_state")
        confirm(emu, seti)
    return seti


def setup_intent_list(emu, params):
    items = filter_equal(emu.store.newest_first("setup_intent"), params, ("customer", "payment_method"))
    return emu.store.page(created_filter(items, params.get("created")), params, "/v1/setup_intents")


def setup_intent_retrieve(emu, params, id):
    params.pop("client_secret", None)
    return emu.store.get("setup_intent", id)


def setup_intent_update(emu, params, id):
    allow(params, UPDATE_FIELDS)
    seti = emu.store.get("setup_intent", id)
    if seti["status"] in ("succeeded", "canceled") and set(params) - {"metadata", "description"}:
        raise StripeError(400, f"You cannot update this SetupIntent because it has a status of {seti['status']}.",
                          code="setup_intent_unexpected_state")
    before = copy.deepcopy(seti)
    if "customer" in params:
        seti["customer"] = emu.store.get("customer", params["customer"], "customer")["id"] \
            if params["customer"] else None
    if "description" in params:
        seti["description"] = params["description"] or None
    if "metadata" in params:
        seti["metadata"] = merge_metadata(seti["metadata"], params["metadata"])
    _set_payment_method(emu, seti, params)
    previous = {k: before[k] for k in before if before[k] != seti[k]}
    if previous:
        emu.emit("setup_intent.updated", seti, previous)
    return seti


def setup_intent_confirm(emu, params, id):
    allow(params, CONFIRM_FIELDS)
    seti = emu.store.get("setup_intent", id)
    if seti["status"] not in CONFIRMABLE:
        raise StripeError(400, f"You cannot confirm this SetupIntent because it has a status of {seti['status']}.",
                          code="setup_intent_unexpected_state")
    _set_payment_method(emu, seti, params)
    if not seti["payment_method"]:
        raise StripeError(400, "You cannot confirm this SetupIntent because it's missing a payment method. Update "
                               "the SetupIntent with a payment method and then confirm it again.",
                          code="setup_intent_unexpected_state")
    confirm(emu, seti)
    return seti


def setup_intent_cancel(emu, params, id):
    allow(params, {"cancellation_reason"})
    seti = emu.store.get("setup_intent", id)
    if seti["status"] in ("succeeded", "canceled", "processing"):
        raise StripeError(400, f"You cannot cancel this SetupIntent because it has a status of {seti['status']}.",
                          code="setup_intent_unexpected_state")
    reason = params.get("cancellation_reason") or None
    if reason not in (None, "abandoned", "duplicate", "requested_by_customer"):
        raise StripeError(400, "Invalid cancellation_reason: must be one of abandoned, duplicate, or "
                               "requested_by_customer", param="cancellation_reason")
    seti.update(status="canceled", cancellation_reason=reason, next_action=None)
    emu.emit("setup_intent.canceled", seti)
    return seti


def register(api):
    api.add("POST", "/v1/setup_intents", setup_intent_create)
    api.add("GET", "/v1/setup_intents", setup_intent_list)
    api.add("GET", "/v1/setup_intents/{id}", setup_intent_retrieve)
    api.add("POST", "/v1/setup_intents/{id}", setup_intent_update)
    api.add("POST", "/v1/setup_intents/{id}/confirm", setup_intent_confirm)
    api.add("POST", "/v1/setup_intents/{id}/cancel", setup_intent_cancel)
