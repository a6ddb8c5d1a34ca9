"""Billing JSON API: checkout, portal and the Stripe webhook. Views parse, call one service, answer."""
from __future__ import annotations

import json
import logging
from typing import Callable

from django.conf import settings
from django.db import DatabaseError, transaction
from django.http import HttpRequest, JsonResponse
from django.views.decorators.cache import never_cache
from django.views.decorators.csrf import csrf_exempt
from django.views.decorators.http import require_POST

from billing_console import ratelimit
from billing_console.errors import error_body
from billing_console.manage_links import ManageLinkInvalid, manage_link_read
from billing_console.models import AuditEvent, Customer, WebhookEvent
from billing_console.services import audit_log
from billing_console.stripe import gateway as stripe_gateway
from billing_console.stripe.checkout import (CheckoutInputError, CheckoutStripeFailed, PlanNotAvailable, checkout_input_clean,
                                             checkout_rate_limit, checkout_start)
from billing_console.stripe.inbox import WebhookRejected, webhook_event_store, webhook_events_wake, webhook_payload_verify
from billing_console.stripe.switch import CLOSED_MESSAGE, CheckoutClosed, checkout_is_open

CLOSED_CODE = CheckoutClosed.code

log = logging.getLogger("billing_console.api")
MAX_JSON_BYTES = 16 * 1024


def _error(status: int, code: str, message: str, **extra) -> JsonResponse:
    return JsonResponse(error_body(code, message, **extra), status=status)


def _content_length(request: HttpRequest) -> int:
    try:
        return int(request.META.get("CONTENT_LENGTH") or 0)
    except ValueError:
        return 0


def _json_body(request: HttpRequest):
    if _content_length(request) > MAX_JSON_BYTES:
        raise CheckoutInputError({"body": "Request body too large."})
    try:
        return json.loads(request.body or b"null")
    except (ValueError, UnicodeDecodeError, RecursionError):  # RecursionError: deeply nested arrays
        raise CheckoutInputError({"body": "Send a JSON object."}) from None


@csrf_exempt
@never_cache
@require_POST
def checkout(request):
    """POST {email, plan | price, device_id?} -> 200 {url, attemptId}."""
    if not checkout_is_open():
        return _error(503, CLOSED_CODE, CLOSED_MESSAGE)
    try:
        data = _json_body(request)
    except CheckoutInputError as exc:
        data, body_error = None, exc
    else:
        body_error = None
    email = data.get("email") if isinstance(data, dict) else None
    wait = checkout_rate_limit(client=ratelimit.client_address(request), email=email)
    if wait:
        response = _error(429, "RATE_LIMITED", "Too many checkout requests. Try again later.", retryAfter=wait)
        response["Retry-After"] = str(wait)
        return response
    # Only a JSON body: a form or text/plain POST is a "simple" request any website can make from its visitors.
    if request.body and request.content_type != "application/json":
        return _error(415, "UNSUPPORTED_MEDIA_TYPE", "Send the request as application/json.")
    try:
        if body_error is not None:
            raise body_error
        clean = checkout_input_clean(data)
    except CheckoutInputError as exc:
        return _error(400, "INVALID_INPUT", "Some fields need attention.", fields=exc.errors)
    except PlanNotAvailable as exc:
        return _error(409, "PLAN_NOT_AVAILABLE", str(exc), plan=exc.plan)
    try:
        attempt, url = checkout_start(**clean)
    except CheckoutStripeFailed as exc:
        return _error(502, "STRIPE_ERROR", f"Checkout could not be opened: {exc.message}",
                      attemptId=str(exc.attempt.pk))
    return JsonResponse({"url": url, "attemptId": str(attempt.pk)})


# --- Portal -------------------------------------------------------------------------------------
# Other ways to prove who the customer is (licensing registers device access tokens from its AppConfig.ready(),
# so the core never imports it): fn(request, data) -> Customer | None. A function returns None when the
# request does not carry its kind of credential and raises ManageLinkInvalid when it does but it is not valid.
PortalAuthenticator = Callable[[HttpRequest, dict], "Customer | None"]
_portal_authenticators: list[tuple[str, PortalAuthenticator]] = []


def register_portal_authenticator(fn: PortalAuthenticator, *, via: str) -> PortalAuthenticator:
    if all(existing is not fn for _, existing in _portal_authenticators):
        _portal_authenticators.append((via, fn))
    return fn


def _portal_customer(request: HttpRequest, data: dict) -> tuple[Customer | None, str]:
    token = data.get("token")
    if isinstance(token, str) and token:
        return manage_link_read(token), "manage_link"
    for via, authenticate in _portal_authenticators:
        customer = authenticate(request, data)
        if customer is not None:
            return customer, via
    return None, ""


@csrf_exempt
@never_cache
@require_POST
def portal(request):
    """POST {token} (a manage-link token), or an empty body with `Authorization: Bearer <device access token>`
    (the desktop app) -> {url}."""
    try:
        data = _json_body(request) if request.body else {}
    except CheckoutInputError as exc:
        return _error(400, "INVALID_INPUT", "Send a JSON object with a token.", fields=exc.errors)
    if not isinstance(data, dict):
        return _error(400, "INVALID_INPUT", "Send a JSON object with a token.")
    try:
        customer, via = _portal_customer(request, data)
    except ManageLinkInvalid:
        customer, via = None, ""
    if customer is None:
        return _error(401, "UNAUTHORIZED", "This link or device token is not valid or has expired. Ask for a new one.")
    if not customer.stripe_customer_id:
        return _error(409, "NO_STRIPE_CUSTOMER", "There is no Stripe billing account for this customer yet.")
    try:
        session = stripe_gateway.portal_session_create(customer_id=customer.stripe_customer_id,
                                                       return_url=settings.BILLING_RETURN_URL)
    except stripe_gateway.StripeGatewayError as exc:
        return _error(502, "STRIPE_ERROR", f"The billing portal could not be opened: {exc.message}")
    with transaction.atomic():
        audit_log(actor_type=AuditEvent.ActorType.CUSTOMER, actor=customer.email, action="customer.portal_opened",
                  target=customer, data={"via": via})
    return JsonResponse({"url": session["url"]})


# --- Webhook ------------------------------------------------------------------------------------
@csrf_exempt
@require_POST
def webhook(request):
    """Verify, store once, answer. Everything else happens in the worker (billing_console.stripe.inbox)."""
    if _content_length(request) > settings.STRIPE_WEBHOOK_MAX_BYTES:
        return _error(413, "TOO_LARGE", "Webhook body too large.")
    body = request.body
    if len(body) > settings.STRIPE_WEBHOOK_MAX_BYTES:
        return _error(413, "TOO_LARGE", "Webhook body too large.")
    try:
        event = webhook_payload_verify(payload=body, signature=request.headers.get("Stripe-Signature", ""))
    except WebhookRejected as exc:
        return _error(exc.status, "WEBHOOK_REJECTED", exc.message)
    try:
        row, created = webhook_event_store(event=event, enqueue=False)
    except DatabaseError:
        log.exception("could not store Stripe event %s", event.get("id"))
        return _error(503, "STORE_FAILED", "The event could not be stored; Stripe will retry.")
    if row.status == WebhookEvent.Status.RECEIVED:
        transaction.on_commit(webhook_events_wake)
    return JsonResponse({"received": True, "duplicate": not created})
