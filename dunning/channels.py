"""How a dunning step reaches the customer: email (Django's backend) and WhatsApp (Evolution API).

Each send answers a `SendResult` whose outcome the services record: sent, retry (with a reason and
maybe a wait), failed (permanent, for support), skipped (nothing can be sent: no phone, bad phone)
or deferred (rate limited here or by the provider; no attempt used). Provider responses are stored
with secrets removed; the Evolution API key travels only in the request header.
"""
from __future__ import annotations

import logging
import smtplib
from dataclasses import dataclass, field
from datetime import datetime

import httpx
import phonenumbers
from django.conf import settings
from django.core.cache import cache
from django.core.mail import EmailMultiAlternatives, get_connection
from django.core.mail.message import make_msgid
from django.core.mail.utils import DNS_NAME
from django.template.loader import render_to_string

from billing_console.manage_links import manage_link_make
from billing_console.wording.money import money_format
from billing_console.ops.logging import redact
from dunning.models import Channel, channel_template_names

log = logging.getLogger("dunning")

SENT, RETRY, FAILED, SKIPPED, DEFERRED = "sent", "retry", "failed", "skipped", "deferred"
_SECRET_KEYS = {"apikey", "api_key", "authorization", "token", "password", "secret"}


@dataclass
class SendResult:
    outcome: str
    reason: str = ""
    detail: str = ""
    message_id: str = ""
    response: dict = field(default_factory=dict)
    retry_after: int | None = None  # seconds, when the provider said


@dataclass
class Message:
    channel: str
    to: str  # email address, or the E.164 number for WhatsApp
    text: str
    subject: str = ""
    html: str = ""


# --- Rendering ------------------------------------------------------------------------------
def format_amount(amount: int, currency: str) -> str:
    """Minor units to the console's one money format: 1999 usd -> "$19.99"."""
    return money_format(amount, currency)


def pay_url(case, customer) -> str:
    """Where the customer pays or updates the card: Stripe's hosted invoice page, else their signed
    manage page (subscription and the Stripe portal)."""
    return case.hosted_invoice_url or manage_link_make(customer)


def render(*, channel: str, template: str, case, customer, step_code: str, now: datetime) -> Message:
    context = {
        "customer": customer,
        "name": customer.name or customer.email,
        "case": case,
        "step_code": step_code,
        "amount": format_amount(case.amount_due, case.currency),
        "pay_url": pay_url(case, customer),
        "days_past_due": case.days_past_due(now),
        "grace_days": case.policy.grace_days,
        "hard_lock_days": case.policy.hard_lock_days,
        "site_url": settings.SITE_URL,
    }
    names = channel_template_names(channel, template)
    if channel == Channel.WHATSAPP:
        return Message(channel, customer.phone, render_to_string(names[0], context).strip())
    subject = " ".join(render_to_string(names[0], context).split())
    return Message(channel, customer.email, render_to_string(names[1], context).strip(), subject=subject,
                   html=render_to_string(names[2], context))


# --- Secrets out of stored responses ----------------------------------------------------------
def scrub(value):
    """A provider response fit to store and show: secret-looking keys dropped, secret values redacted."""
    if isinstance(value, dict):
        return {k: ("[redacted]" if str(k).lower() in _SECRET_KEYS else scrub(v)) for k, v in value.items()}
    if isinstance(value, list):
        return [scrub(v) for v in value]
    if isinstance(value, str):
        return redact(value)[:2000]
    return value


# --- Phone numbers ----------------------------------------------------------------------------
def e164(raw: str) -> str | None:
    """The number in E.164 form if it is a valid international number, else None."""
    raw = (raw or "").strip()
    if not raw.startswith("+"):
        return None
    try:
        number = phonenumbers.parse(raw, None)
    except phonenumbers.NumberParseException:
        return None
    if not phonenumbers.is_valid_number(number):
        return None
    return phonenumbers.format_number(number, phonenumbers.PhoneNumberFormat.E164)


# --- Email ----------------------------------------------------------------------------------
class EmailSender:
    """Sends a batch over one backend connection; each message gets its own result."""

    def __init__(self):
        self.connection = None

    def __enter__(self):
        self.connection = get_connection(fail_silently=False)
        return self

    def __exit__(self, *exc):
        try:
            self.connection.close()
        except Exception:  # closing a broken SMTP session must not hide the results already recorded
            log.warning("email connection close failed", exc_info=True)

    def send(self, message: Message) -> SendResult:
        if not message.to:
            return SendResult(SKIPPED, "no_email", "The customer has no email address.")
        # Our own Message-ID, so support can find the exact email in the mail server's logs.
        message_id = make_msgid(domain=DNS_NAME)
        mail = EmailMultiAlternatives(message.subject, message.text, settings.DEFAULT_FROM_EMAIL, [message.to],
                                      connection=self.connection, headers={"Message-ID": message_id},
                                      reply_to=[settings.SUPPORT_EMAIL] if settings.SUPPORT_EMAIL else None)
        mail.attach_alternative(message.html, "text/html")
        try:
            mail.send()
        except smtplib.SMTPRecipientsRefused as exc:
            return SendResult(FAILED, "recipient_refused", redact(str(exc))[:500])
        except Exception as exc:  # SMTP, network or provider (anymail) errors: worth another attempt
            if type(exc).__name__ == "AnymailRecipientsRefused":
                return SendResult(FAILED, "recipient_refused", redact(str(exc))[:500])
            return SendResult(RETRY, "email_error", f"{type(exc).__name__}: {redact(str(exc))[:500]}")
        provider_id = getattr(getattr(mail, "anymail_status", None), "message_id", None)
        return SendResult(SENT, message_id=str(provider_id or message_id),
                          response={"backend": type(self.connection).__name__})


# --- WhatsApp (Evolution API v2) ---------------------------------------------------------------
class EvolutionClient:
    """POST /message/sendText/<instance> with the `apikey` header; errors mapped to stable reasons."""

    def __init__(self, *, base_url: str | None = None, api_key: str | None = None, instance: str | None = None,
                 timeout: float | None = None):
        self.base_url = (settings.EVOLUTION_API_URL if base_url is None else base_url).rstrip("/")
        self.api_key = settings.EVOLUTION_API_KEY if api_key is None else api_key
        self.instance = instance or settings.EVOLUTION_INSTANCE
        self.timeout = settings.EVOLUTION_TIMEOUT_SECONDS if timeout is None else timeout
        self._client: httpx.Client | None = None

    @property
    def _http(self) -> httpx.Client:
        # Made on first use: building the TLS context costs ~0.4 s, wasted on a batch of emails only.
        if self._client is None:
            self._client = httpx.Client(base_url=self.base_url or "http://evolution.invalid", timeout=self.timeout,
                                        headers={"apikey": self.api_key})
        return self._client

    @property
    def configured(self) -> bool:
        return bool(self.base_url and self.api_key and self.instance)

    def close(self):
        if self._client is not None:
            self._client.close()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

    def connection_state(self) -> str:
        """"open", "close", or an error reason -- for the admin and health, never showing the key."""
        try:
            response = self._http.get(f"/instance/connectionState/{self.instance}")
        except httpx.HTTPError as exc:
            return f"network_error: {type(exc).__name__}"
        if response.status_code != 200:
            return f"http_{response.status_code}"
        return str((response.json().get("instance") or {}).get("state", "unknown"))

    def send_text(self, number_e164: str, text: str) -> SendResult:
        try:
            response = self._http.post(f"/message/sendText/{self.instance}",
                                       json={"number": number_e164.lstrip("+"), "text": text})
        except (httpx.ConnectError, httpx.ConnectTimeout) as exc:
            # Nothing reached the provider: safe to try again.
            return SendResult(RETRY, "network_error", f"{type(exc).__name__}: could not reach the Evolution API")
        except httpx.HTTPError as exc:
            # The request may have been delivered: resending could message the customer twice.
            return SendResult(FAILED, "outcome_unknown",
                              f"{type(exc).__name__} after the request was sent; check the instance before retrying")
        return self._result(response)

    def _result(self, response: httpx.Response) -> SendResult:
        try:
            body = response.json()
        except ValueError:
            body = {"text": response.text[:500]}
        status = response.status_code
        # Only the status and the message id are kept: Evolution echoes the message text, which carries a
        # working manage link, and stored responses are shown to support and go into backups.
        stored = {"status": status}
        message = body.get("response", {}).get("message") if isinstance(body, dict) and isinstance(body.get("response"), dict) else None
        if status in (200, 201):
            key = body.get("key") or {} if isinstance(body, dict) else {}
            message_id = str(key.get("id", "")) if isinstance(key, dict) else ""
            return SendResult(SENT, message_id=message_id, response={**stored, "message_id": message_id})
        if status == 429:
            return SendResult(DEFERRED, "rate_limited", "The Evolution API rate limit was reached.", response=stored,
                              retry_after=_int(response.headers.get("Retry-After")))
        if status == 400 and _not_on_whatsapp(message):
            return SendResult(FAILED, "not_on_whatsapp", "The number has no WhatsApp account.", response=stored)
        if status == 400:
            return SendResult(FAILED, "message_rejected", f"Evolution rejected the message: {_text(message)}", response=stored)
        if status in (401, 403):
            return SendResult(RETRY, "auth_failed", "The Evolution API refused the API key (check EVOLUTION_API_KEY).",
                              response=stored)
        if status == 404:
            return SendResult(RETRY, "instance_not_found", f"No Evolution instance {self.instance!r}.", response=stored)
        if _text(message).lower().startswith("connection closed"):
            return SendResult(RETRY, "instance_disconnected",
                              "The WhatsApp instance is disconnected: reconnect it (scan the QR code).", response=stored)
        return SendResult(RETRY, "provider_error", f"Evolution answered {status}: {_text(message)}", response=stored)


def _int(value) -> int | None:
    try:
        return max(1, int(value))
    except (TypeError, ValueError):
        return None


def _text(message) -> str:
    if isinstance(message, list):
        return "; ".join(_text(m) for m in message)
    if isinstance(message, dict):
        return ", ".join(f"{k}={v}" for k, v in message.items())
    return str(message or "")[:500]


def _not_on_whatsapp(message) -> bool:
    return isinstance(message, list) and any(isinstance(m, dict) and m.get("exists") is False for m in message)


def whatsapp_reserve(count: int, *, now: datetime, instance: str | None = None) -> int:
    """Take up to `count` sends from this minute's allowance for the instance; returns how many were granted.

    The counter lives in the cache (Redis or the database cache in production), so every worker shares it.
    """
    limit = settings.DUNNING_WHATSAPP_PER_MINUTE
    if count <= 0:
        return 0
    if limit <= 0:
        return count
    key = f"dunning:wa:{instance or settings.EVOLUTION_INSTANCE}:{int(now.timestamp()) // 60}"
    cache.add(key, 0, timeout=120)
    try:
        used = cache.incr(key, count)
    except ValueError:  # expired between add and incr
        cache.set(key, count, timeout=120)
        used = count
    return max(0, min(count, limit - (used - count)))
