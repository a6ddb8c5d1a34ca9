"""POST /api/billing/usage: the product's backend reports usage, server to server.

Auth `Authorization: Bearer <USAGE_API_SECRET>` (constant time; 401 wrong or missing, 503 unset).
Body: one event, or {"events": [...], "atomic": false}. Answers 202 {"accepted", "duplicate", "errors"};
400 malformed (every field error listed, nothing stored); 422 unknown customer or meter (per item in
`errors` beside the stored ones, or for the whole batch with "atomic": true, nothing stored); 413 over
USAGE_MAX_BODY_BYTES or USAGE_MAX_EVENTS_PER_REQUEST; 429 past USAGE_RATE_LIMIT_PER_CLIENT.
Errors use {"error": {"code", "message", "errors"?}}.
"""
from __future__ import annotations

import hmac
import json

from django.conf import settings
from django.http import JsonResponse
from django.views.decorators.cache import never_cache
from django.views.decorators.csrf import csrf_exempt
from django.views.decorators.http import require_POST

from billing_console import ratelimit
from billing_console.errors import error_body
from billing_console.invoicing.usage import UsageError, usage_events_ingest


def _error(status: int, code: str, message: str, errors: list | None = None) -> JsonResponse:
    return JsonResponse(error_body(code, message, **({"errors": errors} if errors else {})), status=status)


def _authorized(request) -> bool:
    scheme, _, token = request.headers.get("Authorization", "").partition(" ")
    return scheme.lower() == "bearer" and hmac.compare_digest(token.strip().encode(), settings.USAGE_API_SECRET.encode())


@csrf_exempt
@never_cache
@require_POST
def usage(request):
    if not settings.USAGE_API_SECRET:
        return _error(503, "disabled", "The usage API is disabled: USAGE_API_SECRET is not configured.")
    if not _authorized(request):
        response = _error(401, "unauthorized", "Missing or wrong bearer token.")
        response["WWW-Authenticate"] = 'Bearer realm="usage"'
        return response
    client = ratelimit.client_address(request)
    wait = ratelimit.hit([(ratelimit.bucket("usage", client), settings.USAGE_RATE_LIMIT_PER_CLIENT)],
                         window=settings.USAGE_RATE_LIMIT_WINDOW_SECONDS)
    if wait:
        response = _error(429, "rate_limited", "Too many requests; slow down.")
        response["Retry-After"] = str(wait)
        return response
    try:
        length = int(request.META.get("CONTENT_LENGTH") or 0)
    except ValueError:
        length = 0
    if length > settings.USAGE_MAX_BODY_BYTES:
        return _error(413, "too_large", f"The body is over {settings.USAGE_MAX_BODY_BYTES} bytes.")
    body = request.body
    if len(body) > settings.USAGE_MAX_BODY_BYTES:
        return _error(413, "too_large", f"The body is over {settings.USAGE_MAX_BODY_BYTES} bytes.")
    try:
        data = json.loads(body or b"null")
    except (ValueError, UnicodeDecodeError, RecursionError):
        return _error(400, "invalid_json", "Send a JSON object.")
    if not isinstance(data, dict):
        return _error(400, "invalid_input", "Send one event object or {\"events\": [...]}.")
    atomic = data.get("atomic", False)
    if "events" in data:
        if set(data) - {"events", "atomic"}:
            return _error(400, "invalid_input", "A batch has only `events` and `atomic`.")
        events = data["events"]
        if not isinstance(events, list):
            return _error(400, "invalid_input", "`events` is a list.")
    else:
        atomic = False
        events = [data]
    if not isinstance(atomic, bool):
        return _error(400, "invalid_input", "`atomic` is true or false.")
    try:
        result = usage_events_ingest(events=events, atomic=atomic)
    except UsageError as exc:
        return _error(exc.status, exc.code, exc.message, exc.errors)
    return JsonResponse(result, status=202)
