"""Invoices: the console's copy of Stripe invoices, and their delivery (PDF -> storage -> email).

Receivers call `invoice_apply_event`; delivery runs in a django-q2 task after commit
(`invoice_deliver`), claims the invoice with a conditional update (a lease on `next_delivery_at`),
and retries with bounded backoff. Every step leaves an InvoiceEvent and one structured log line.
"""
from __future__ import annotations

import json
import logging
import re
import time
from datetime import datetime, timedelta, timezone as dt_timezone
from email.utils import make_msgid

from django.conf import settings
from django.core.files.base import ContentFile
from django.core.files.storage import default_storage
from django.core.mail import EmailMessage
from django.db import transaction
from django.db.models import F
from django.template.loader import render_to_string
from django.utils import timezone

from billing_console.errors import ServiceError
from billing_console.invoicing.cohorts import cohort_emails_invoices
from billing_console.invoicing.pdf import (  # noqa: F401  (callers import them from here too)
    invoice_discounts, invoice_amount_refunded, invoice_stamp, invoice_pdf_context, invoice_render_pdf, invoice_pdf_path)
from billing_console.models import Customer, Invoice, InvoiceEvent
from billing_console.wording.money import currency_exponent, money_format  # noqa: F401  (re-exported: callers import it from here)
from billing_console.ops.logging import redact
from billing_console.selectors import customer_for_stripe_object
from billing_console.services import audit_log
from billing_console.stripe.objects import invoice_subscription_id
from billing_console.stripe.statuses import INVOICE_FINALIZED, INVOICE_STATUS_RANK

log = logging.getLogger("billing_console.invoicing")

DELIVER_TASK = "billing_console.invoicing.tasks.deliver_invoice"

# A late event must never move an invoice backwards: paid or void never return to open.
INVOICE_EVENT_TYPES = ("invoice.created", "invoice.finalized", "invoice.updated", "invoice.paid",
                       "invoice.payment_failed", "invoice.payment_action_required", "invoice.marked_uncollectible",
                       "invoice.voided")
DELIVERY_TRIGGERS = ("invoice.finalized", "invoice.paid", "invoice.payment_failed", "invoice.payment_action_required")
# A resync delivers what Stripe finalized and the console never emailed (a lost invoice.finalized).
RESYNC = "resync"
IMPORT = "import"  # a backfill of history: recorded and rendered, never emailed
FINALIZED_STATUSES = INVOICE_FINALIZED


def _delivery_due(event_type: str, obj: dict) -> bool:
    """Whether this event sends the invoice. One Stripe charges automatically is sent once the charge is
    decided (paid, failed, or waiting for 3-D Secure), not at finalization: sent then, it would ask the
    customer to pay an invoice that Stripe pays a second later. A $0 one (a trial, a credit that covers
    it) waits for invoice.paid too, which Stripe sends at once: sent open, its PDF would read "open"."""
    if event_type not in DELIVERY_TRIGGERS:
        return False
    if event_type != "invoice.finalized" or obj.get("status") != "open":
        return True
    owed = obj.get("amount_remaining", obj.get("amount_due"))
    if not isinstance(owed, int) or isinstance(owed, bool):
        return True
    return owed > 0 and obj.get("collection_method", "charge_automatically") != "charge_automatically"
_SAFE_PATH = re.compile(r"[^A-Za-z0-9_\-]")


class InvoiceShapeError(ServiceError):
    """The Stripe object is not an invoice we can read; the event fails visibly instead of half-applying."""


class DeliveryError(Exception):
    pass


# --- Reading Stripe's invoice -----------------------------------------------------------------
def _int(obj: dict, key: str, default: int = 0) -> int:
    value = obj.get(key)
    if value is None:
        return default
    if isinstance(value, bool) or not isinstance(value, int):
        raise InvoiceShapeError("invalid_invoice", f"invoice.{key} must be an integer amount in minor units, got {value!r}.")
    return value


def _ts(value) -> datetime | None:
    if value in (None, ""):
        return None
    if isinstance(value, bool) or not isinstance(value, int):
        raise InvoiceShapeError("invalid_invoice", f"Expected a unix timestamp, got {value!r}.")
    return datetime.fromtimestamp(value, tz=dt_timezone.utc)


def invoice_tax(obj: dict) -> int:
    """Tax in minor units: `total_taxes` (current API) or `tax` (older API versions)."""
    taxes = obj.get("total_taxes")
    if isinstance(taxes, list):
        return sum(int(t.get("amount") or 0) for t in taxes if isinstance(t, dict))
    return _int(obj, "tax")


def invoice_discount(obj: dict) -> int:
    """The sum of the invoice's discounts (`total_discount_amounts`), minor units."""
    total = 0
    for item in obj.get("total_discount_amounts") or []:
        if isinstance(item, dict):
            try:
                total += int(item.get("amount") or 0)
            except (TypeError, ValueError):
                continue
    return total


def invoice_fields_from_stripe(obj: dict) -> dict:
    """The Invoice columns read from Stripe's invoice object (amounts in minor units)."""
    if not isinstance(obj, dict) or obj.get("object") != "invoice":
        raise InvoiceShapeError("invalid_invoice", "data.object is not an invoice.")
    stripe_id = obj.get("id")
    if not isinstance(stripe_id, str) or not stripe_id:
        raise InvoiceShapeError("invalid_invoice", "The invoice has no id.")
    customer = obj.get("customer")
    if isinstance(customer, dict):
        customer = customer.get("id")
    if not isinstance(customer, str) or not customer:
        raise InvoiceShapeError("invalid_invoice", f"Invoice {stripe_id} has no customer.")
    currency = obj.get("currency")
    if not isinstance(currency, str) or not re.fullmatch(r"[A-Za-z]{3}", currency):
        raise InvoiceShapeError("invalid_invoice", f"Invoice {stripe_id} has no valid currency.")
    status = obj.get("status") or ""
    if status and status not in INVOICE_STATUS_RANK:
        raise InvoiceShapeError("invalid_invoice", f"Invoice {stripe_id} has an unknown status {status!r}.")
    return {
        "stripe_id": stripe_id,
        "stripe_customer_id": customer,
        "subscription_id": invoice_subscription_id(obj),
        "number": (obj.get("number") or "")[:64],
        "status": status,
        "currency": currency.lower(),
        "subtotal": _int(obj, "subtotal"),
        "tax": invoice_tax(obj),
        "total": _int(obj, "total"),
        "amount_due": _int(obj, "amount_due"),
        "amount_paid": _int(obj, "amount_paid"),
        "discount": invoice_discount(obj),
        "period_start": _ts(obj.get("period_start")),
        "period_end": _ts(obj.get("period_end")),
        "hosted_invoice_url": (obj.get("hosted_invoice_url") or "")[:1000],
        "stripe_created": _ts(obj.get("created")),
    }


def _is_newer(invoice: Invoice, status: str, at: datetime) -> bool:
    if invoice.state_at is None:
        return True
    old, new = INVOICE_STATUS_RANK.get(invoice.status, 0), INVOICE_STATUS_RANK.get(status, 0)
    if new != old:
        return new > old
    return at >= invoice.state_at


def invoice_event_record(invoice: Invoice, kind: str, **data) -> InvoiceEvent:
    """One delivery step: a row for support and one structured log line (reference 002's datapoints)."""
    event = InvoiceEvent.objects.create(invoice=invoice, kind=kind, data=data)
    level = logging.WARNING if kind.endswith("_failed") else logging.INFO
    log.log(level, "%s %s", kind, invoice.stripe_id,
            extra={"event": kind, "account_id": invoice.stripe_customer_id, "invoice": invoice.stripe_id, **data})
    return event


# --- Applying Stripe events -------------------------------------------------------------------
def invoice_apply_event(*, event: dict) -> Invoice:
    """Upsert the local invoice from an invoice.* event; on invoice.finalized queue its delivery.

    Idempotent per event and per object: an older or lower-ranked state than the one applied is
    recorded as received but does not change the row.
    """
    try:
        obj = event["data"]["object"]
        at = _ts(event["created"])
    except (KeyError, TypeError) as exc:
        raise InvoiceShapeError("invalid_invoice", f"Malformed event: missing {exc}.") from exc
    if at is None:
        raise InvoiceShapeError("invalid_invoice", "The event has no created time.")
    return invoice_apply_stripe(obj=obj, at=at, event_type=event.get("type", ""), event_id=event.get("id", ""))


def invoice_apply_stripe(*, obj: dict, at: datetime, event_type: str, event_id: str = "", force: bool = False,
                         audit: dict | None = None) -> Invoice:
    """Apply Stripe's invoice object as of `at`. `force` (a resync: Stripe's current answer) skips the
    watermark check. `audit` ({actor_type, actor, action}) records who asked, in the same transaction."""
    fields = invoice_fields_from_stripe(obj)
    with transaction.atomic():
        invoice, created = Invoice.objects.select_for_update().get_or_create(
            stripe_id=fields["stripe_id"],
            defaults={"stripe_customer_id": fields["stripe_customer_id"], "currency": fields["currency"]},
        )
        applied = created or force or _is_newer(invoice, fields["status"], at)
        update = ["updated_at"]
        if applied:
            for name, value in fields.items():
                setattr(invoice, name, value)
            invoice.state_at = at
            invoice.data = obj
            update += list(fields) + ["state_at", "data"]
        if invoice.customer_id is None:
            invoice.customer = customer_for_stripe_object(obj)
            update.append("customer")
        # Several events may queue it (a lost or late one must not lose the email); it is sent once. A resync
        # delivers what Stripe finalized and the console never emailed.
        triggers = _delivery_due(event_type, obj) or (event_type == RESYNC and invoice.status in FINALIZED_STATUSES)
        queue = (triggers and invoice.emailed_at is None
                 and invoice.delivery_status == Invoice.Delivery.PENDING and invoice.next_delivery_at is None)
        if queue and not cohort_emails_invoices(invoice.customer_id):
            # The invoice's cohort went back to the legacy system, which emails it.
            queue = False
            invoice.delivery_status = Invoice.Delivery.LEGACY
            update.append("delivery_status")
            invoice_event_record(invoice, "delivery_skipped", reason="cohort_on_legacy")
        if queue:
            invoice.next_delivery_at = timezone.now()
            update.append("next_delivery_at")
        invoice.save(update_fields=update if not created else None)
        kind = {RESYNC: "resynced", IMPORT: "imported"}.get(event_type, "webhook_received")
        invoice_event_record(invoice, kind, event_type=event_type,
                             idempotency_key=event_id, applied=applied, status=invoice.status)
        if audit:
            audit_log(**audit, target=invoice, customer=invoice.customer,
                      data={"status": invoice.status, "total": invoice.total, "currency": invoice.currency,
                            "delivery_queued": queue})
        if queue:
            _enqueue_delivery(invoice.pk)
    return invoice


INVOICE_ID = re.compile(r"^in_[A-Za-z0-9_]{1,250}$")


def invoice_resync(*, stripe_id: str, actor_type: str, actor: str = "") -> Invoice:
    """Re-read one invoice from Stripe (outside any transaction) and apply it as current, through the
    same code as invoice events: status, amounts, and delivery when it is finalized and was never
    emailed. Support's fix for a missed or late invoice event, and for invoice drift.
    Raises ServiceError for a malformed id, the gateway's error when Stripe cannot answer."""
    from billing_console.stripe import gateway as stripe_gateway

    stripe_id = (stripe_id or "").strip()
    if not INVOICE_ID.match(stripe_id):
        raise ServiceError("invalid", f"{stripe_id!r} is not a Stripe invoice id (in_...).")
    # stripe-python hands *_decimal fields back as Decimal; the stored copy is plain JSON like an event's.
    obj = json.loads(json.dumps(stripe_gateway.invoice_retrieve(stripe_id), default=str))
    return invoice_apply_stripe(obj=obj, at=timezone.now(), event_type=RESYNC, force=True,
                                audit={"actor_type": actor_type, "actor": actor, "action": "invoice.resynced"})


def _enqueue_delivery(invoice_id: int) -> None:
    from django_q.tasks import async_task

    transaction.on_commit(lambda: async_task(DELIVER_TASK, invoice_id, task_name=f"invoice-delivery-{invoice_id}"))


def invoice_pdf_store(invoice: Invoice) -> str:
    """Render and store the invoice's PDF (replacing a stored one); raises DeliveryError, recorded."""
    return _render_and_store(invoice)


def _render_and_store(invoice: Invoice) -> str:
    started = time.monotonic()
    try:
        pdf = invoice_render_pdf(invoice)
        path = invoice_pdf_path(invoice)
        if default_storage.exists(path):
            default_storage.delete(path)  # a re-render replaces the file instead of getting a suffixed name
        stored = default_storage.save(path, ContentFile(pdf))
    except Exception as exc:
        error = redact(f"{type(exc).__name__}: {exc}")[:500]
        invoice_event_record(invoice, "pdf_render_failed", error=error)
        raise DeliveryError(f"PDF render failed: {error}") from exc
    duration_ms = int((time.monotonic() - started) * 1000)
    Invoice.objects.filter(pk=invoice.pk).update(pdf_path=stored, delivery_status=Invoice.Delivery.RENDERED,
                                                 updated_at=timezone.now())
    invoice.pdf_path, invoice.delivery_status = stored, Invoice.Delivery.RENDERED
    invoice_event_record(invoice, "pdf_rendered", duration_ms=duration_ms, path=stored, bytes=len(pdf))
    return stored


# --- Email ------------------------------------------------------------------------------------
def invoice_recipient(invoice: Invoice) -> str:
    if invoice.customer_id and invoice.customer.email:
        return invoice.customer.email
    return (invoice.data or {}).get("customer_email") or ""


def _send_email(invoice: Invoice) -> str:
    recipient = invoice_recipient(invoice)
    try:
        if not recipient:
            raise DeliveryError("No email address for this invoice's customer yet.")
        with default_storage.open(invoice.pdf_path, "rb") as fh:
            pdf = fh.read()
        context = invoice_pdf_context(invoice)
        subject = f"Invoice {context['number']} from {context['seller']}"
        message = EmailMessage(
            subject=subject,
            body=render_to_string("invoices/email.txt", context),
            from_email=settings.DEFAULT_FROM_EMAIL,
            to=[recipient],
            bcc=[settings.BILLING_BCC_ADDRESS] if settings.BILLING_BCC_ADDRESS else [],
            reply_to=[settings.SUPPORT_EMAIL] if settings.SUPPORT_EMAIL else None,
            headers={"Message-ID": make_msgid(domain="billing-console")},
        )
        message.attach(f"{_SAFE_PATH.sub('_', context['number'])}.pdf", pdf, "application/pdf")
        message.send(fail_silently=False)
    except Exception as exc:
        error = redact(f"{type(exc).__name__}: {exc}")[:500]
        invoice_event_record(invoice, "email_failed", template="invoice", error=error)
        raise DeliveryError(f"Email failed: {error}") from exc
    status = getattr(message, "anymail_status", None)
    message_id = (status.message_id if status is not None and status.message_id else message.extra_headers["Message-ID"])
    now = timezone.now()
    Invoice.objects.filter(pk=invoice.pk).update(delivery_status=Invoice.Delivery.SENT, emailed_at=now,
                                                 next_delivery_at=None, delivery_error="", updated_at=now)
    invoice.delivery_status, invoice.emailed_at, invoice.next_delivery_at = Invoice.Delivery.SENT, now, None
    invoice_event_record(invoice, "email_sent", template="invoice", message_id=str(message_id),
                         bcc=bool(settings.BILLING_BCC_ADDRESS))
    return str(message_id)


# --- Delivery ---------------------------------------------------------------------------------
def _claimable(now: datetime):
    return Invoice.objects.filter(delivery_status__in=[Invoice.Delivery.PENDING, Invoice.Delivery.RENDERED],
                                  emailed_at__isnull=True, next_delivery_at__lte=now)


def invoice_retry_delay(attempts: int) -> timedelta:
    base = settings.INVOICE_DELIVERY_RETRY_BASE_SECONDS
    return timedelta(seconds=min(base * 2 ** max(attempts - 1, 0), settings.INVOICE_DELIVERY_RETRY_MAX_SECONDS))


def invoice_deliver(*, invoice_id: int) -> Invoice | None:
    """Render (if not stored yet) and email one invoice. Returns None when someone else holds it or
    it is not due (already emailed, failed for good, or waiting for its retry time)."""
    now = timezone.now()
    lease = now + timedelta(seconds=settings.INVOICE_DELIVERY_LEASE_SECONDS)
    # The claim: a conditional update, so two workers (or a replayed event) never send the same invoice.
    if not _claimable(now).filter(pk=invoice_id).update(next_delivery_at=lease, updated_at=now,
                                                       delivery_attempts=F("delivery_attempts") + 1):
        return None
    invoice = Invoice.objects.select_related("customer").get(pk=invoice_id)
    if not cohort_emails_invoices(invoice.customer_id):  # switched back to legacy since it was queued
        Invoice.objects.filter(pk=invoice.pk).update(delivery_status=Invoice.Delivery.LEGACY, next_delivery_at=None,
                                                     updated_at=timezone.now())
        invoice.delivery_status, invoice.next_delivery_at = Invoice.Delivery.LEGACY, None
        invoice_event_record(invoice, "delivery_skipped", reason="cohort_on_legacy")
        return invoice
    try:
        if not invoice.pdf_path or not default_storage.exists(invoice.pdf_path):
            _render_and_store(invoice)
        _send_email(invoice)
    except DeliveryError as exc:
        _schedule_retry(invoice, str(exc))
    return invoice


def _schedule_retry(invoice: Invoice, error: str) -> None:
    now = timezone.now()
    if invoice.delivery_attempts >= settings.INVOICE_DELIVERY_MAX_ATTEMPTS:
        Invoice.objects.filter(pk=invoice.pk).update(delivery_status=Invoice.Delivery.FAILED, next_delivery_at=None,
                                                     delivery_error=error, updated_at=now)
        invoice.delivery_status, invoice.next_delivery_at = Invoice.Delivery.FAILED, None
        invoice_event_record(invoice, "delivery_gave_up", attempts=invoice.delivery_attempts, error=error)
    else:
        retry_at = now + invoice_retry_delay(invoice.delivery_attempts)
        Invoice.objects.filter(pk=invoice.pk).update(next_delivery_at=retry_at, delivery_error=error, updated_at=now)
        invoice.next_delivery_at = retry_at
        invoice_event_record(invoice, "delivery_retry_scheduled", attempts=invoice.delivery_attempts,
                             retry_at=retry_at.isoformat())
    invoice.delivery_error = error


def invoice_deliver_due(*, limit: int = 200) -> dict:
    """The retry cron: deliver every invoice whose (re)try time has come."""
    counts = {"due": 0, "sent": 0, "retrying": 0, "failed": 0, "skipped": 0}
    ids = list(_claimable(timezone.now()).order_by("next_delivery_at").values_list("pk", flat=True)[:limit])
    counts["due"] = len(ids)
    for invoice_id in ids:
        invoice = invoice_deliver(invoice_id=invoice_id)
        if invoice is None:
            counts["skipped"] += 1
        elif invoice.delivery_status == Invoice.Delivery.SENT:
            counts["sent"] += 1
        elif invoice.delivery_status == Invoice.Delivery.FAILED:
            counts["failed"] += 1
        else:
            counts["retrying"] += 1
    return counts


def invoice_resend(*, invoice: Invoice, actor_type: str, actor: str = "") -> Invoice:
    """Support's "resend invoice": the one way an invoice is emailed again. Audited."""
    with transaction.atomic():
        invoice = Invoice.objects.select_for_update().get(pk=invoice.pk)
        if invoice.status in ("", "draft"):
            raise ServiceError("not_finalized", f"Invoice {invoice} is not finalized yet; there is nothing to send.")
        previous = {"delivery_status": invoice.delivery_status,
                    "emailed_at": invoice.emailed_at.isoformat() if invoice.emailed_at else None}
        invoice.delivery_status = Invoice.Delivery.RENDERED if invoice.pdf_path else Invoice.Delivery.PENDING
        invoice.emailed_at = None
        invoice.delivery_attempts = 0
        invoice.delivery_error = ""
        invoice.next_delivery_at = timezone.now()
        invoice.save(update_fields=["delivery_status", "emailed_at", "delivery_attempts", "delivery_error",
                                    "next_delivery_at", "updated_at"])
        invoice_event_record(invoice, "resend_requested", actor=f"{actor_type}:{actor}")
        audit_log(actor_type=actor_type, actor=actor, action="invoice.resend_requested", target=invoice,
                  customer=invoice.customer, data=previous)
        _enqueue_delivery(invoice.pk)
    return invoice
