"""Structured logging: a request/task id on every line, JSON when LOG_FORMAT=json, secrets redacted."""
from __future__ import annotations

import contextvars
import json
import logging
import re
import uuid

from django.conf import settings

request_id_var: contextvars.ContextVar[str] = contextvars.ContextVar("request_id", default="-")
# The django-q2 task being run by this worker ("-" outside tasks); set by the signals below.
task_id_var: contextvars.ContextVar[str] = contextvars.ContextVar("task_id", default="-")

# Shapes of secrets that must never reach a log line, whatever the caller passed in.
_SECRET_PATTERNS = re.compile(
    r"(sk|rk)_(live|test)_[A-Za-z0-9]{8,}|whsec_[A-Za-z0-9]{8,}|Bearer\s+[A-Za-z0-9._\-]{8,}"
)
# A manage link's token works as a password for the customer's pages: keep the path, drop the token.
_MANAGE_LINK = re.compile(r"/manage/[^/\s\"'?#<>]+")
_SETTINGS_SECRETS = ("STRIPE_SECRET_KEY", "STRIPE_WEBHOOK_SECRET", "CLOUD_MASTER_KEY", "LICENSE_SIGNING_KEY",
                     "OPS_SECRET", "METRICS_TOKEN", "EVOLUTION_API_KEY", "SECRET_KEY", "EMAIL_HOST_PASSWORD")
_RESERVED = set(vars(logging.LogRecord("", 0, "", 0, "", (), None))) | {"message", "asctime", "request_id", "task_id"}


def configured_secrets() -> list[str]:
    values = [getattr(settings, name, "") for name in _SETTINGS_SECRETS]
    values += list(getattr(settings, "CLOUD_MASTER_KEY_PREVIOUS", []))
    return [v for v in values if isinstance(v, str) and len(v) >= 8]


def redact(text: str) -> str:
    text = _SECRET_PATTERNS.sub("[redacted]", text)
    text = _MANAGE_LINK.sub("/manage/[redacted]", text)
    for value in configured_secrets():
        if value in text:
            text = text.replace(value, "[redacted]")
    return text


class ContextFilter(logging.Filter):
    def filter(self, record):
        record.request_id = request_id_var.get()
        record.task_id = task_id_var.get()
        return True


class RedactSecretsFilter(logging.Filter):
    def filter(self, record):
        message = record.getMessage()
        clean = redact(message)
        if clean != message:
            record.msg, record.args = clean, ()
        return True


class ClientErrorTracebackFilter(logging.Filter):
    """A 4xx answer (PermissionDenied, Http404, a bad request) is the client's mistake, not a bug: Django's
    django.request line is kept, its traceback dropped. 5xx records keep theirs."""

    def filter(self, record):
        status = getattr(record, "status_code", None)
        if record.name == "django.request" and isinstance(status, int) and 400 <= status < 500:
            record.exc_info, record.exc_text = None, None
        return True


class TextFormatter(logging.Formatter):
    """The plain-text line, redacted as a whole: the message, and an exception's traceback as well."""

    def format(self, record):
        return redact(super().format(record))


class JsonFormatter(logging.Formatter):
    def format(self, record):
        payload = {
            "ts": self.formatTime(record, "%Y-%m-%dT%H:%M:%S"),
            "level": record.levelname,
            "logger": record.name,
            "msg": record.getMessage(),
            "request_id": getattr(record, "request_id", "-"),
            "task_id": getattr(record, "task_id", "-"),
        }
        for key, value in record.__dict__.items():
            if key not in _RESERVED and not key.startswith("_"):
                payload[key] = value
        if record.exc_info:
            payload["exc"] = self.formatException(record.exc_info)
        return redact(json.dumps(payload, default=str))


class RequestIdMiddleware:
    """Takes X-Request-ID from the proxy or makes one; echoes it back and tags every log line."""

    def __init__(self, get_response):
        self.get_response = get_response

    def __call__(self, request):
        rid = request.headers.get("X-Request-ID", "")[:64] or uuid.uuid4().hex[:16]
        token = request_id_var.set(rid)
        try:
            response = self.get_response(request)
        finally:
            request_id_var.reset(token)
        response["X-Request-ID"] = rid
        return response


# Tokens of the task ids set by pre_execute, keyed by task id, so post_execute restores the previous value.
_task_tokens: dict[str, contextvars.Token] = {}


def _task_started(sender, func=None, task=None, **kwargs):
    task_id = str((task or {}).get("id") or "-")
    _task_tokens[task_id] = task_id_var.set(task_id)


def _task_finished(sender, func=None, task=None, **kwargs):
    token = _task_tokens.pop(str((task or {}).get("id") or "-"), None)
    if token is not None:
        task_id_var.reset(token)


def connect_task_ids() -> None:
    """Tag every log line a django-q2 task writes with its task id (called from the core's ready())."""
    from django_q.signals import post_execute_in_worker, pre_execute

    pre_execute.connect(_task_started, dispatch_uid="billing_console.ops.logging.task_started")
    post_execute_in_worker.connect(_task_finished, dispatch_uid="billing_console.ops.logging.task_finished")


# Keys whose values are credentials whatever they look like (request headers, cookies, form fields).
_SENSITIVE_KEYS = re.compile(r"authorization|cookie|stripe-signature|apikey|api[_-]?key|password|passwd|secret|"
                             r"token|csrf|session", re.IGNORECASE)


def _scrub(value, depth: int = 0):
    if depth > 20:
        return "[redacted]"
    if isinstance(value, str):
        return redact(value)
    if isinstance(value, dict):
        return {k: ("[redacted]" if isinstance(k, str) and _SENSITIVE_KEYS.search(k) and v not in (None, "")
                    else _scrub(v, depth + 1)) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_scrub(v, depth + 1) for v in value]
    return value


def sentry_before_send(event: dict, hint: dict | None = None) -> dict:
    """Sentry's before_send: every string the event carries goes through `redact` (the secret shapes and
    every configured secret), and credential-named fields (headers, cookies, form data) are dropped."""
    return _scrub(event)
