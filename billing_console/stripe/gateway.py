"""Every Stripe API call the console makes goes through here.

One `StripeClient` per configuration (key, base URL, pinned API version), with a timeout and
stripe-python's own retries (network errors, 409 and 5xx, exponential backoff with jitter). Every
POST carries an idempotency key, so a retry -- ours or stripe-python's -- never does the work twice;
callers pass a deterministic key when a repeat of the same business action must reuse it.
Answers come back as plain dicts in the pinned API version's shape (read them with
`billing_console.stripe.objects`). Failures become `StripeGatewayError` with a message that is
safe to show in the admin and the API: no key, no secret, no raw response.
"""
from __future__ import annotations

import logging
import uuid
from functools import lru_cache
from typing import Any, Callable, Iterator

import stripe
from django.conf import settings

from billing_console.errors import ServiceError
from billing_console.ops.logging import redact

log = logging.getLogger("billing_console.stripe")


class StripeGatewayError(ServiceError):
    """A Stripe call failed. `message` is safe to show; `retryable` says whether trying later can help."""

    def __init__(self, message: str, *, code: str = "stripe_error", http_status: int | None = None,
                 retryable: bool = False, request_id: str = ""):
        super().__init__(code, message)
        self.http_status = http_status
        self.retryable = retryable
        self.request_id = request_id

def configured() -> bool:
    return bool(settings.STRIPE_SECRET_KEY)


@lru_cache(maxsize=4)
def _client(api_key: str, api_base: str, api_version: str, timeout: float, retries: int) -> stripe.StripeClient:
    base = {"api": api_base} if api_base else None
    return stripe.StripeClient(
        api_key, stripe_version=api_version, base_addresses=base, max_network_retries=retries,
        http_client=stripe.RequestsClient(timeout=timeout),
    )


def client() -> stripe.StripeClient:
    if not settings.STRIPE_SECRET_KEY:
        raise StripeGatewayError("Stripe is not configured (STRIPE_SECRET_KEY is not set).", code="not_configured")
    return _client(settings.STRIPE_SECRET_KEY, getattr(settings, "STRIPE_API_HOST", ""), settings.STRIPE_API_VERSION,
                   float(settings.STRIPE_TIMEOUT_SECONDS), int(settings.STRIPE_MAX_RETRIES))


def new_idempotency_key(action: str) -> str:
    """A fresh key for an action that is never repeated as such (each call is a new request)."""
    return f"bc-{action}-{uuid.uuid4().hex}"


def _as_dict(obj) -> Any:
    return obj.to_dict() if hasattr(obj, "to_dict") else obj


def _error(action: str, exc: stripe.StripeError) -> StripeGatewayError:
    status = getattr(exc, "http_status", None)
    request_id = getattr(exc, "request_id", "") or ""
    stripe_message = redact((getattr(exc, "user_message", None) or "").strip())
    code = getattr(exc, "code", None) or ""
    if isinstance(exc, stripe.AuthenticationError):
        return StripeGatewayError(f"Stripe rejected the API key while trying to {action} (check STRIPE_SECRET_KEY).",
                                  code="authentication", http_status=status, request_id=request_id)
    if isinstance(exc, stripe.PermissionError):
        return StripeGatewayError(f"The Stripe key may not {action} (restricted key without this permission).",
                                  code="permission", http_status=status, request_id=request_id)
    if isinstance(exc, stripe.APIConnectionError):
        return StripeGatewayError(f"Stripe could not be reached to {action} (network error or timeout); try again.",
                                  code="network", retryable=True, request_id=request_id)
    if isinstance(exc, stripe.RateLimitError):
        return StripeGatewayError(f"Stripe is rate limiting requests; could not {action}. Try again shortly.",
                                  code="rate_limited", http_status=status, retryable=True, request_id=request_id)
    if isinstance(exc, stripe.CardError):
        return StripeGatewayError(f"The card was declined: {stripe_message or 'declined'}", code=code or "card_declined",
                                  http_status=status, request_id=request_id)
    if isinstance(exc, stripe.IdempotencyError):
        return StripeGatewayError(f"Stripe refused to repeat a request with different parameters while trying to "
                                  f"{action}.", code="idempotency", http_status=status, request_id=request_id)
    if isinstance(exc, stripe.InvalidRequestError):
        if code == "resource_missing":
            return StripeGatewayError(f"Stripe has no such object ({action}): {stripe_message}", code="not_found",
                                      http_status=status, request_id=request_id)
        return StripeGatewayError(f"Stripe refused to {action}: {stripe_message or 'invalid request'}",
                                  code=code or "invalid_request", http_status=status, request_id=request_id)
    retryable = status is None or status >= 500
    return StripeGatewayError(f"Stripe failed to {action} (HTTP {status or '-'}); try again later.",
                              code="api_error", http_status=status, retryable=retryable, request_id=request_id)


def _call(action: str, fn: Callable[[], Any]) -> Any:
    try:
        return _as_dict(fn())
    except stripe.StripeError as exc:
        error = _error(action, exc)
        log.warning("stripe call failed: %s", error.message,
                    extra={"event": "stripe_error", "action": action, "code": error.code,
                           "http_status": error.http_status, "stripe_request_id": error.request_id})
        raise error from None


def _post_options(idempotency_key: str) -> dict:
    if not idempotency_key:
        raise ValueError("Every Stripe POST needs an idempotency key.")
    return {"idempotency_key": idempotency_key}


# --- Checkout and portal ----------------------------------------------------------------------
def checkout_session_create(*, params: dict, idempotency_key: str) -> dict:
    return _call("create a Checkout Session", lambda: client().v1.checkout.sessions.create(
        params=params, options=_post_options(idempotency_key)))


def checkout_session_expire(session_id: str, *, idempotency_key: str) -> dict:
    return _call("expire a Checkout Session", lambda: client().v1.checkout.sessions.expire(
        session_id, options=_post_options(idempotency_key)))


def portal_session_create(*, customer_id: str, return_url: str, idempotency_key: str | None = None) -> dict:
    return _call("open a Customer Portal session", lambda: client().v1.billing_portal.sessions.create(
        params={"customer": customer_id, "return_url": return_url},
        options=_post_options(idempotency_key or new_idempotency_key("portal"))))


# --- Customers and subscriptions ----------------------------------------------------------------
def customer_retrieve(customer_id: str) -> dict:
    return _call("read a customer", lambda: client().v1.customers.retrieve(customer_id))


def subscription_retrieve(subscription_id: str, *, expand: list[str] | None = None) -> dict:
    return _call("read a subscription", lambda: client().v1.subscriptions.retrieve(
        subscription_id, params={"expand": expand} if expand else None))


def coupon_retrieve(coupon_id: str) -> dict:
    return _call("read a coupon", lambda: client().v1.coupons.retrieve(coupon_id))


def subscription_update(subscription_id: str, *, params: dict, idempotency_key: str) -> dict:
    return _call("update a subscription", lambda: client().v1.subscriptions.update(
        subscription_id, params=params, options=_post_options(idempotency_key)))


def subscription_cancel(subscription_id: str, *, idempotency_key: str) -> dict:
    return _call("cancel a subscription", lambda: client().v1.subscriptions.cancel(
        subscription_id, options=_post_options(idempotency_key)))


# --- Invoices and events ------------------------------------------------------------------------
def invoice_retrieve(invoice_id: str, *, expand: list[str] | None = None) -> dict:
    return _call("read an invoice", lambda: client().v1.invoices.retrieve(
        invoice_id, params={"expand": expand} if expand else None))


_LISTS = {
    "invoices": lambda c: c.v1.invoices.list,
    "subscriptions": lambda c: c.v1.subscriptions.list,
    "customers": lambda c: c.v1.customers.list,
    "events": lambda c: c.v1.events.list,
    "checkout_sessions": lambda c: c.v1.checkout.sessions.list,
    "billing_portal_configurations": lambda c: c.v1.billing_portal.configurations.list,
}


def list_page(resource: str, params: dict) -> dict:
    """One page of a Stripe list (`{"data": [...], "has_more": bool}`) for callers that page themselves."""
    if resource not in _LISTS:
        raise ValueError(f"Unknown Stripe list {resource!r}; one of {sorted(_LISTS)}.")
    return _call(f"list {resource.replace('_', ' ')}", lambda: _LISTS[resource](client())(params=dict(params)))


def _paginate(action: str, lister: Callable[[dict], Any], params: dict | None) -> Iterator[dict]:
    """Every object of a Stripe list, page by page (100 per page), newest first as Stripe lists them."""
    params = {**(params or {}), "limit": 100}
    while True:
        page = _call(action, lambda: lister(dict(params)))
        data = page.get("data", [])
        yield from data
        if not page.get("has_more") or not data:
            return
        params["starting_after"] = data[-1]["id"]


def subscriptions_list(params: dict | None = None) -> Iterator[dict]:
    return _paginate("list subscriptions", lambda p: client().v1.subscriptions.list(params=p), params)


def invoices_list(params: dict | None = None) -> Iterator[dict]:
    return _paginate("list invoices", lambda p: client().v1.invoices.list(params=p), params)


def events_list(params: dict | None = None) -> Iterator[dict]:
    return _paginate("list events", lambda p: client().v1.events.list(params=p), params)


def products_list(params: dict | None = None) -> Iterator[dict]:
    return _paginate("list products", lambda p: client().v1.products.list(params=p), params)


def prices_list(params: dict | None = None) -> Iterator[dict]:
    return _paginate("list prices", lambda p: client().v1.prices.list(params=p), params)


def charge_retrieve(charge_id: str) -> dict:
    return _call("read a charge", lambda: client().v1.charges.retrieve(charge_id))


# --- Webhook endpoints ----------------------------------------------------------------------------
def webhook_endpoints_list() -> list[dict]:
    return list(_paginate("list webhook endpoints", lambda p: client().v1.webhook_endpoints.list(params=p), None))


def webhook_endpoint_create(*, params: dict, idempotency_key: str) -> dict:
    """The answer carries the endpoint's signing secret (`secret`): Stripe shows it only here."""
    return _call("create a webhook endpoint", lambda: client().v1.webhook_endpoints.create(
        params=params, options=_post_options(idempotency_key)))


def webhook_endpoint_update(endpoint_id: str, *, params: dict, idempotency_key: str) -> dict:
    return _call("update a webhook endpoint", lambda: client().v1.webhook_endpoints.update(
        endpoint_id, params=params, options=_post_options(idempotency_key)))


def sandbox_clock_now() -> int:
    """The Stripe sandbox's "now" (epoch seconds; its clock moves with `clock advance`). Sandbox only: the
    real Stripe has no such endpoint, so this refuses to run without STRIPE_API_HOST or in live mode."""
    host = getattr(settings, "STRIPE_API_HOST", "")
    if not host or settings.STRIPE_LIVE_MODE:
        raise StripeGatewayError("The sandbox clock exists only in sandbox mode (STRIPE_API_HOST, not live).",
                                 code="not_sandbox")
    import httpx

    try:
        response = httpx.get(f"{host.rstrip('/')}/_sandbox/clock", timeout=float(settings.STRIPE_TIMEOUT_SECONDS))
        response.raise_for_status()
        return int(response.json()["now"])
    except (httpx.HTTPError, ValueError, KeyError, TypeError) as exc:
        raise StripeGatewayError(f"The sandbox clock did not answer ({type(exc).__name__}).", code="sandbox_clock",
                                 retryable=True) from None


# --- Billing meters (usage) ---------------------------------------------------------------------
def meters_list(params: dict | None = None) -> Iterator[dict]:
    return _paginate("list billing meters", lambda p: client().v1.billing.meters.list(params=p), params)


def meter_create(*, params: dict, idempotency_key: str) -> dict:
    return _call("create a billing meter", lambda: client().v1.billing.meters.create(
        params=params, options=_post_options(idempotency_key)))


def meter_event_create(*, event_name: str, stripe_customer_id: str, value: str, timestamp: int, identifier: str,
                       customer_key: str = "stripe_customer_id", value_key: str = "value") -> dict:
    """One meter event. Stripe deduplicates on `identifier` (24 hours); the idempotency key is derived
    from it, so stripe-python's own retries replay the first answer instead of a duplicate error."""
    params = {"event_name": event_name, "identifier": identifier, "timestamp": timestamp,
              "payload": {customer_key: stripe_customer_id, value_key: value}}
    return _call("report usage", lambda: client().v1.billing.meter_events.create(
        params=params, options=_post_options(f"bc-usage-{identifier}")))


def meter_event_summaries(meter_id: str, *, customer: str, start_time: int, end_time: int) -> Iterator[dict]:
    return _paginate("read meter event summaries", lambda p: client().v1.billing.meters.event_summaries.list(
        meter_id, params=p), {"customer": customer, "start_time": start_time, "end_time": end_time})


def price_retrieve(price_id: str, *, expand: list[str] | None = None) -> dict:
    return _call("read a price", lambda: client().v1.prices.retrieve(
        price_id, params={"expand": expand} if expand else None))
