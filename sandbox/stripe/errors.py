"""Stripe's error answers and the request-parameter helpers every resource family uses."""
from __future__ import annotations


class StripeError(Exception):
    def __init__(self, status: int, message: str, *, type: str = "invalid_request_error", code=None,
                 param=None, decline_code=None, extra=None):
        super().__init__(message)
        self.status = status
        error = {"type": type, "message": message}
        if code:
            error["code"] = code
            error["doc_url"] = f"https://stripe.com/docs/error-codes/{code.replace('_', '-')}"
        if param:
            error["param"] = param
        if decline_code:
            error["decline_code"] = decline_code
        error.update(extra or {})
        self.body = {"error": error}


# How Stripe names each resource in "No such ..." errors.
ERROR_NAMES = {"payment_method": "PaymentMethod", "subscription_item": "subscription item",
               "webhook_endpoint": "webhook endpoint", "test_helpers.test_clock": "test clock",
               "subscription_schedule": "subscription schedule",
               "billing_portal.configuration": "configuration", "setup_intent": "setupintent",
               "balance_transaction": "balance transaction"}


def missing(kind: str, object_id: str, param: str = "id") -> StripeError:
    return StripeError(404, f"No such {ERROR_NAMES.get(kind, kind)}: '{object_id}'", code="resource_missing",
                       param=param)


def required(params: dict, *names: str):
    for name in names:
        if params.get(name) in (None, ""):
            raise StripeError(400, f"Missing required param: {name}.", code="parameter_missing", param=name)


def allow(params: dict, allowed: set[str]):
    """Stripe refuses any parameter a route does not know."""
    for key in params:
        if key not in allowed:
            raise StripeError(400, f"Received unknown parameter: {key}", param=key)


def metadata(current: dict, given) -> dict:
    """Stripe's metadata update: keys merge, an empty value removes a key, '' clears all."""
    if given is None:
        return current
    if given == "":
        return {}
    if not isinstance(given, dict):
        raise StripeError(400, "Invalid object", param="metadata")
    merged = dict(current)
    for key, value in given.items():
        if value == "":
            merged.pop(key, None)
        else:
            merged[key] = str(value)
    return merged
