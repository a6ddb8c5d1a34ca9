"""The customer's phone number (WhatsApp dunning reaches it): normalised to E.164 with phonenumbers, from
three places (Stripe Checkout's phone collection, `customer.updated`, the manage page) and support's edit.

A number a person types that is not valid is a form error; a number Stripe sends that is not valid is
recorded in `phone_invalid` for support to see, never a failed event.
"""
from __future__ import annotations

from typing import Callable

import phonenumbers
from django.conf import settings
from django.db import transaction
from django.utils import timezone

from billing_console.errors import ServiceError
from billing_console.models import AuditEvent, Customer
from billing_console.services import audit_log

INVALID_MESSAGE = "Enter the number with its country code, e.g. +55 11 99999-9999 or +1 415 555 0100."
MAX_RAW = 64


def phone_e164(raw) -> str | None:
    """The number in E.164 form, or None when it is not a valid number. Spaces, dashes and brackets are
    fine; without a leading + it is read in PHONE_DEFAULT_REGION (none set: it must have a country code)."""
    if not isinstance(raw, str) or not raw.strip() or len(raw) > MAX_RAW:
        return None
    region = settings.PHONE_DEFAULT_REGION or None
    try:
        number = phonenumbers.parse(raw.strip(), None if raw.strip().startswith("+") else region)
    except phonenumbers.NumberParseException:
        return None
    if not phonenumbers.is_valid_number(number):
        return None
    return phonenumbers.format_number(number, phonenumbers.PhoneNumberFormat.E164)


# Whether some dunning step sends on WhatsApp: dunning registers fn() -> bool from its AppConfig.ready(), so the
# core never imports it.
_whatsapp_in_use: list[Callable[[], bool]] = []


def register_whatsapp_in_use(fn: Callable[[], bool]) -> Callable[[], bool]:
    if fn not in _whatsapp_in_use:
        _whatsapp_in_use.append(fn)
    return fn


def whatsapp_configured() -> bool:
    """WhatsApp dunning is configured: the Evolution API is set and a dunning step sends on WhatsApp. Only then
    does checkout ask for a phone and the manage page offer WhatsApp reminders."""
    if not (settings.EVOLUTION_API_URL and settings.EVOLUTION_API_KEY and settings.EVOLUTION_INSTANCE):
        return False
    return any(in_use() for in_use in _whatsapp_in_use)


def customer_change_phone(*, customer: Customer, phone, actor_type: str, actor: str = "", consent: bool = False,
                          reason: str = "") -> Customer:
    """Set (or, with "", remove) the customer's phone, as the customer or support typed it. An invalid number
    raises ServiceError (fields: phone) and changes nothing. Audited with the old and new values."""
    if phone is None:
        phone = ""
    if not isinstance(phone, str) or len(phone) > MAX_RAW:
        raise ServiceError("invalid", fields={"phone": INVALID_MESSAGE})
    new = ""
    if phone.strip():
        new = phone_e164(phone)
        if new is None:
            raise ServiceError("invalid", fields={"phone": INVALID_MESSAGE})
    if actor_type == AuditEvent.ActorType.CUSTOMER and new and not consent:
        raise ServiceError("invalid", fields={"consent": "Tick the box to agree to payment reminders on WhatsApp, or leave the "
                                          "number empty."})
    reason = (reason or "").strip()[:255] if isinstance(reason, str) else ""
    with transaction.atomic():
        c = Customer.objects.select_for_update().get(pk=customer.pk)
        if c.phone == new and not c.phone_invalid and (not consent or c.phone_consent_at):
            return c
        old, old_invalid = c.phone, c.phone_invalid
        c.phone, c.phone_invalid = new, ""
        if actor_type == AuditEvent.ActorType.CUSTOMER:
            c.phone_consent_at = timezone.now() if new else None
        elif new != old:
            c.phone_consent_at = None  # support's edit is not the customer's consent to the new number
        c.save(update_fields=["phone", "phone_invalid", "phone_consent_at", "updated_at"])
        audit_log(actor_type=actor_type, actor=actor, action="customer.phone_changed", target=c,
                  data={"old": old, "new": new, "old_invalid": old_invalid, "consent": bool(c.phone_consent_at),
                        "reason": reason})
    return c


def customer_apply_stripe_phone(*, customer: Customer, raw, actor: str, source: str) -> list[str]:
    """Take the phone Stripe has for the customer (checkout's collected number, a customer object). Call inside
    the caller's transaction with the customer row locked; saves nothing itself, returns the fields changed.
    An empty value changes nothing (Stripe drops it on edits that do not touch it)."""
    if not isinstance(raw, str) or not raw.strip():
        return []
    raw = raw.strip()[:MAX_RAW]
    new = phone_e164(raw)
    if new is None:
        if customer.phone_invalid == raw:
            return []
        audit_log(actor_type=AuditEvent.ActorType.STRIPE, actor=actor, action="customer.phone_invalid", target=customer,
                  data={"raw": raw, "kept": customer.phone, "source": source})
        customer.phone_invalid = raw
        return ["phone_invalid"]
    if new == customer.phone and not customer.phone_invalid:
        return []
    audit_log(actor_type=AuditEvent.ActorType.STRIPE, actor=actor, action="customer.phone_changed", target=customer,
              data={"old": customer.phone, "new": new, "old_invalid": customer.phone_invalid, "source": source})
    fields = ["phone", "phone_invalid"]
    if new != customer.phone:
        customer.phone_consent_at = None
        fields.append("phone_consent_at")
    customer.phone, customer.phone_invalid = new, ""
    return fields
