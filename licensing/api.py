"""The licence API for desktop apps (JSON, CSRF-exempt: no cookies, the key or token is the credential).

Documented in docs/licensing.md. Errors are ``{"code": ..., "error": ...}`` with a 4xx/503 status;
an unknown key and a device that is not on the licence get the same 404, and every token problem
the same 401, so a caller never learns which part was wrong.
"""
from __future__ import annotations

import json
import logging
import re
from functools import wraps

from django.conf import settings
from django.http import JsonResponse
from django.utils import timezone
from django.views.decorators.csrf import csrf_exempt

from billing_console import ratelimit
from billing_console.errors import desktop_error_body
from licensing.keys import key_normalize
from licensing import status_cache
from licensing.models import DeviceActivation, License
from billing_console.wording.subscription import licence_status_words, subscription_copy
from licensing.metrics import license_request_count
from licensing.selectors import (
    LicenseState, activation_for, activation_from_row, activation_row, license_by_key, license_limit_words,
    license_state,
)
from licensing.services import (
    API, CHECKIN_WRITE_INTERVAL, DeviceNotFound, LicenseError, TooManyDevices, device_activation_touch,
    license_activate_device, license_deactivate_device,
)
from licensing.tokens import DEVICE, LICENSE, SigningUnavailable, TokenInvalid, iso, signing_key, token_sign, \
    token_verify_device, verify_keys

log = logging.getLogger("licensing")
MAX_BODY_BYTES = 8 * 1024
DEVICE_ID = re.compile(r"^[A-Za-z0-9._:@{}\-]{1,128}$")
CONTROL_CHARS = re.compile(r"[\x00-\x1f\x7f]")
NOT_FOUND = ("NOT_FOUND", "Unknown licence key or device.")
UNAUTHORIZED = ("UNAUTHORIZED", "The device token is invalid or has expired; activate the device again.")


class ApiError(Exception):
    def __init__(self, status: int, code: str, message: str, *, headers: dict | None = None, **extra):
        super().__init__(message)
        self.status, self.code, self.message, self.headers, self.extra = status, code, message, headers or {}, extra

    def response(self) -> JsonResponse:
        response = JsonResponse(desktop_error_body(self.code, self.message, **self.extra), status=self.status)
        for name, value in self.headers.items():
            response[name] = value
        return response


def not_found() -> ApiError:
    return ApiError(404, *NOT_FOUND)


def unauthorized() -> ApiError:
    return ApiError(401, *UNAUTHORIZED, headers={"WWW-Authenticate": 'Bearer realm="license"'})


class Limiter:
    """The request's rate-limit check, made once: the view adds the key's bucket when it knows the key,
    and a request that fails before that (bad input, bad token) is still counted for its address."""

    def __init__(self, request):
        self.address = ratelimit.client_address(request)
        self.checked = False

    def check(self, key: str | None = None) -> None:
        self.start(key)()

    def start(self, key: str | None = None):
        """Count this request now; the returned function raises the 429 and must be called once, after
        the caller's own read (which then runs while the cache answers)."""
        self.checked = True
        limits = [(ratelimit.bucket("addr", self.address), settings.LICENSE_RATE_LIMIT_PER_ADDRESS)]
        if key is not None:
            limits.append((ratelimit.bucket("key", key), settings.LICENSE_RATE_LIMIT_PER_KEY))
        finish = ratelimit.hit_start(limits, window=settings.LICENSE_RATE_LIMIT_WINDOW_SECONDS)

        def check() -> None:
            wait = finish()
            if wait:
                raise ApiError(429, "RATE_LIMITED", f"Too many requests; retry in {wait} seconds.",
                               headers={"Retry-After": str(wait)}, retryAfter=wait)

        return check


def api_view(*methods: str):
    def decorate(view):
        @csrf_exempt
        @wraps(view)
        def wrapper(request, *args, **kwargs):
            limiter = request.limiter = Limiter(request)
            limited = None
            try:
                if request.method not in methods:
                    raise ApiError(405, "METHOD_NOT_ALLOWED", f"Use {' or '.join(methods)}.",
                                   headers={"Allow": ", ".join(methods)})
                response = view(request, *args, **kwargs)
            except ApiError as exc:
                response = exc.response()
            except SigningUnavailable as exc:
                log.error("licence API unavailable: %s", exc, extra={"event": "license_signing_unavailable"})
                response = ApiError(503, "SIGNING_UNAVAILABLE", str(exc)).response()
            finally:
                # Every request counts for its address, even one that ends in an unexpected error.
                if not limiter.checked:
                    try:
                        limiter.check()
                    except ApiError as exc:
                        limited = exc
            if limited is not None:
                response = limited.response()
            response["Cache-Control"] = response.get("Cache-Control", "no-store")
            license_request_count(response.status_code)
            return response

        wrapper.license_api = True  # served past the middleware it does not need (licensing/middleware.py)
        return wrapper

    return decorate


# --- Input ----------------------------------------------------------------------------------
def _json_body(request) -> dict:
    if len(request.body) > MAX_BODY_BYTES:
        raise ApiError(413, "BAD_REQUEST", f"The request body is larger than {MAX_BODY_BYTES} bytes.")
    if not request.body:
        raise ApiError(400, "BAD_REQUEST", "The request body is empty; send a JSON object.")
    if request.content_type != "application/json":
        raise ApiError(415, "BAD_REQUEST", "Send a JSON body with Content-Type: application/json.")
    try:
        data = json.loads(request.body)
    except (ValueError, UnicodeDecodeError, RecursionError):  # RecursionError: deeply nested arrays
        raise ApiError(400, "BAD_REQUEST", "The request body is not valid JSON.") from None
    if not isinstance(data, dict):
        raise ApiError(400, "BAD_REQUEST", "The request body must be a JSON object.")
    return data


def _encodable(value: str) -> bool:
    """JSON may carry lone surrogates (\\ud800) that no database or hash can encode."""
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


def _field_error(field: str, message: str) -> ApiError:
    return ApiError(400, "BAD_REQUEST", f"{field}: {message}", fields={field: message})


def _device_id(value, *, field: str = "device_id") -> str:
    if value is None or value == "":
        raise _field_error(field, "This field is required.")
    if not isinstance(value, str) or not DEVICE_ID.match(value):
        raise _field_error(field, "Use 1-128 characters: letters, digits and . _ : @ { } -")
    return value


def _text(data: dict, field: str, max_length: int) -> str:
    value = data.get(field, "")
    if value is None:
        return ""
    if not isinstance(value, str):
        raise _field_error(field, "Must be a string.")
    value = value.strip()
    if len(value) > max_length or CONTROL_CHARS.search(value) or not _encodable(value):
        raise _field_error(field, f"Use at most {max_length} printable characters.")
    return value


def _key(value) -> str:
    if value is None or value == "":
        raise _field_error("key", "This field is required.")
    if not isinstance(value, str) or len(value) > 80 or not value.isascii():
        raise _field_error("key", "Must be a licence key like BCL-XXXXX-XXXXX-XXXXX-XXXXX-XXXXX-XXXXX.")
    return value


def _key_bucket(key: str) -> str:
    """One rate-limit bucket per licence key however it is spelled (case, dashes, spaces)."""
    return f"key:{key_normalize(key) or ''.join(key.split()).replace('-', '').upper()}"


def _bearer(request) -> str | None:
    header = request.META.get("HTTP_AUTHORIZATION", "")  # request.headers would copy every header
    if not header:
        return None
    scheme, _, token = header.partition(" ")
    if scheme.lower() != "bearer" or not token.strip():
        raise unauthorized()
    return token.strip()


def _token_row(token: str, device_id: str | None, limiter: Limiter) -> tuple[dict, tuple]:
    """The token's claims and the row (activation, licence, customer) it speaks for, or 401."""
    try:
        claims = token_verify_device(token, device_id=device_id)
    except TokenInvalid as exc:
        log.info("device token rejected: %s", exc.reason, extra={"event": "license_token_rejected", "reason": exc.reason})
        raise unauthorized() from None
    license_id, token_device = claims.get("license"), claims.get("device")
    if not isinstance(license_id, int) or not isinstance(token_device, str):
        raise unauthorized()
    # The database read runs while the rate-limit counts travel (a refused call throws the row away).
    rate_check = limiter.start(f"license:{license_id}")
    try:
        row = activation_row(license_id=license_id, device_id=token_device)
    finally:
        rate_check()
    # A reissued key retires the tokens minted under the old one.
    if row is None or row[KEY_GENERATION_INDEX] != claims.get("gen"):
        raise unauthorized()
    return claims, row


def _token_activation(token: str, device_id: str | None, limiter: Limiter):
    """The activation a device token speaks for (with licence and customer), or 401."""
    return activation_from_row(_token_row(token, device_id, limiter)[1])


KEY_GENERATION_INDEX = len(DeviceActivation._meta.concrete_fields) + \
    [field.attname for field in License._meta.concrete_fields].index("key_generation")


# --- Output ---------------------------------------------------------------------------------
def _status_body(state: LicenseState, now=None) -> dict:
    lic, activation, ent = state.license, state.activation, state.entitlement
    # The same words as the manage page, without the invoice read (amounts owed are on the manage page).
    copy = subscription_copy(lic.customer, invoices=[], ent=ent, price_lookup=False)
    licence_words, _ = licence_status_words(lic, copy, current=lic.subscription_id == lic.customer.subscription_id)
    body = {
        "active": state.active,
        "status": state.reason,
        "subscriptionState": copy.state,
        "licenseStatus": licence_words,
        "headline": copy.headline,
        "message": copy.detail,
        "entitlement": lic.plan if state.active else None,
        "plan": lic.plan,
        "lock": ent.locked or None,
        "licenseKeyPrefix": lic.key_prefix,
        "maxDevices": lic.max_devices,
        # From the licence row (no query): after a downgrade the devices already active keep working.
        "activeDevices": lic.active_devices,
        "devicesOverLimit": lic.devices_over_limit,
        "deviceLimitMessage": license_limit_words(lic, ent) or None,
        "currentPeriodEnd": iso(ent.current_period_end),
        "cancelAtPeriodEnd": lic.customer.cancel_at_period_end,
        "offlineGraceDays": ent.offline_grace_days,
        "graceEndsAt": iso(ent.grace_ends_at),
        "device": None,
        "license": None,
        "deviceAccessToken": None,
        "deviceAccessTokenExpiresAtIso": None,
        "checkedAt": iso(now or timezone.now()),
    }
    if activation is None or not activation.is_active:
        return body
    body["device"] = {"deviceId": activation.device_id, "name": activation.name, "platform": activation.platform,
                      "activatedAt": iso(activation.activated_at), "lastCheckedAt": iso(activation.last_checked_at)}
    expires_at = state.token_expires_at
    facts = {"customer": lic.customer_id, "license": lic.pk, "device": activation.device_id,
             "entitlement": body["entitlement"], "status": state.reason}
    body["license"] = token_sign({**facts, "active": state.active, "plan": lic.plan, "maxDevices": lic.max_devices,
                                  "currentPeriodEnd": body["currentPeriodEnd"], "graceEndsAt": body["graceEndsAt"],
                                  "offlineGraceDays": ent.offline_grace_days}, typ=LICENSE, expires_at=expires_at)
    if state.active:
        body["deviceAccessToken"] = token_sign({**facts, "gen": lic.key_generation}, typ=DEVICE, expires_at=expires_at)
        body["deviceAccessTokenExpiresAtIso"] = iso(expires_at)
    return body


# --- Views ----------------------------------------------------------------------------------
@api_view("POST")
def activate(request):
    data = _json_body(request)
    key = _key(data.get("key"))
    device_id = _device_id(data.get("device_id"))
    name, platform = _text(data, "name", 200), _text(data, "platform", 64)
    request.limiter.check(_key_bucket(key))
    signing_key()  # refuse before writing anything when tokens cannot be signed
    lic = license_by_key(key)
    if lic is None:
        raise not_found()
    try:
        activation, created = license_activate_device(license=lic, device_id=device_id, name=name, platform=platform)
    except TooManyDevices as exc:
        raise ApiError(409, exc.code, str(exc), count=exc.count, max=exc.max_devices) from None
    except LicenseError as exc:
        raise ApiError(403, exc.code, str(exc), active=False) from None
    state = license_state(license=activation.license, activation=activation)
    return JsonResponse(_status_body(state), status=201 if created else 200)


@api_view("POST")
def deactivate(request):
    data = _json_body(request)
    device_id = _device_id(data.get("device_id"))
    token = _bearer(request)
    if token:
        activation = _token_activation(token, device_id, request.limiter)
        lic = activation.license
    else:
        key = _key(data.get("key"))
        request.limiter.check(_key_bucket(key))
        lic = license_by_key(key)
        if lic is None:
            raise not_found()
    try:
        activation = license_deactivate_device(license=lic, device_id=device_id, actor_type=API)
    except DeviceNotFound:
        raise not_found() from None
    return JsonResponse({"ok": True, "deviceId": activation.device_id, "deactivatedAt": iso(activation.deactivated_at)})


@api_view("GET")
def status(request):
    if "key" in request.GET:
        raise _field_error("key", "Send the licence key in the X-License-Key header, never in the URL "
                                  "(URLs end up in logs).")
    kid = signing_key()[1].kid
    token = _bearer(request)
    if token:
        device_id = request.GET.get("device_id")
        claims, row = _token_row(token, _device_id(device_id) if device_id is not None else None, request.limiter)
        return JsonResponse(_token_status_body(claims, row, kid))
    key = _key(request.headers.get("X-License-Key"))
    device_id = _device_id(request.GET.get("device_id"))
    request.limiter.check(_key_bucket(key))
    lic = license_by_key(key)
    if lic is None:
        raise not_found()
    activation = activation_for(license=lic, device_id=device_id)
    if activation is not None:
        activation.license = lic
    state = license_state(license=lic, activation=activation)
    if state.activation is not None and state.activation.is_active:
        device_activation_touch(activation=state.activation)
    return JsonResponse(_status_body(state))


def _token_status_body(claims: dict, row: tuple, kid: str) -> dict:
    """The status of a token's device: the cached answer for this exact row and signing key when there
    is one (see licensing/status_cache.py), else computed, signed and cached."""
    now = timezone.now()
    license_id, device_id = claims["license"], claims["device"]
    version = status_cache.version(row)
    active_device = row[status_cache.DEACTIVATED_INDEX] is None
    checked = row[status_cache.CHECKIN_INDEX]
    activation = None
    if active_device and (checked is None or now - checked >= CHECKIN_WRITE_INTERVAL):
        activation = activation_from_row(row)
        device_activation_touch(activation=activation, now=now)
        checked = activation.last_checked_at
    cached = active_device and status_cache.answer_get(license_id=license_id, device_id=device_id, version=version,
                                                       kid=kid, now=now)
    if cached:
        return {**cached, "checkedAt": iso(now), "device": {**cached["device"], "lastCheckedAt": iso(checked)}}
    activation = activation or activation_from_row(row)
    state = license_state(license=activation.license, activation=activation, now=now)
    body = _status_body(state, now=now)
    if active_device:
        # Tokens are signed again once half-way to their expiry, or when the row or the key changes.
        expires_at = state.token_expires_at
        fresh_until = now.timestamp() + (int(expires_at.timestamp()) - now.timestamp()) / 2
        # The answer's words also change by the clock alone when the paid period ends (grace begins): never
        # serve it past that instant.
        period_end = state.entitlement.current_period_end
        if period_end is not None and period_end.timestamp() > now.timestamp():
            fresh_until = min(fresh_until, period_end.timestamp())
        status_cache.answer_put(license_id=license_id, device_id=device_id, version=version, kid=kid, body=body,
                                fresh_until=fresh_until)
    return body


@api_view("GET")
def public_key(request):
    request.limiter.check()
    keys = verify_keys()
    if not keys:
        raise SigningUnavailable("No licence verification key is configured on this server (LICENSE_SIGNING_KEY).")
    current = next((k.kid for k in keys.values() if k.current), None)
    response = JsonResponse({"algorithm": "EdDSA", "curve": "Ed25519", "currentKid": current,
                             "keys": [key.as_jwk() for key in keys.values()]})
    response["Cache-Control"] = "public, max-age=300"
    return response
