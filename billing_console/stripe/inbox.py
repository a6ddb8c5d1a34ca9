"""The Stripe event inbox: verify, store once, answer; then apply in a worker, once, all or nothing.

    webhook view --verify--> webhook_event_receive() --INSERT once per evt_ id--> 200
                                                      `-- async_task(process, row id), with the row
    worker: webhook_event_process()  claim (conditional UPDATE) -> dispatch.prepare() (Stripe reads a
            receiver needs, outside any transaction) -> one transaction: dispatch.dispatch()
            -> processed (or ignored: no receiver for the type), mirror due -> on commit, kick the
            dj-stripe mirror (billing_console.stripe.mirror, its own task; a failure is a warning)
            a receiver exception rolls everything back -> failed, attempts+1, next_attempt_at (backoff)
    cron stripe_events_retry: failed-and-due, stuck in processing past the lease, never enqueued.
    replay (admin, manage.py replay_events): the same process, forced.
"""
from __future__ import annotations

import json
import logging
import time
from datetime import datetime, timedelta

import stripe
from django.conf import settings
from django.db import IntegrityError, transaction
from django.db.models import F, Q, QuerySet
from django.utils import timezone

from billing_console.errors import ServiceError
from billing_console.models import WebhookEvent
from billing_console.ops.logging import redact
from billing_console.services import audit_log
from billing_console.stripe import dispatch as event_bus
from billing_console.stripe import mirror
from billing_console.stripe import objects as so

log = logging.getLogger("billing_console.stripe")


def _processing_lease() -> timedelta:
    """A claimed event not finished after this long is taken as crashed and can be claimed again."""
    return timedelta(seconds=settings.STRIPE_EVENT_PROCESSING_LEASE_SECONDS)


def _not_enqueued_after() -> timedelta:
    """Received but never processed (the enqueue was lost): the retry cron picks it up after this."""
    return timedelta(seconds=settings.STRIPE_EVENT_ENQUEUE_GRACE_SECONDS)


BACKOFF_BASE_SECONDS = 60
BACKOFF_MAX = timedelta(hours=6)


class WebhookRejected(Exception):
    """The request is not a genuine, readable Stripe event. `status` is the HTTP answer."""

    def __init__(self, message: str, status: int = 400):
        super().__init__(message)
        self.message = message
        self.status = status


# --- Receiving ----------------------------------------------------------------------------------
MAX_STRIPE_TIMESTAMP = 253402300799  # 9999-12-31T23:59:59Z, the last second a datetime can hold


def webhook_payload_verify(*, payload: bytes, signature: str) -> dict:
    """Check Stripe's signature (any of several v1 signatures, timestamp within the tolerance) and
    parse the event. Raises WebhookRejected."""
    secret = settings.STRIPE_WEBHOOK_SECRET
    if not secret:
        raise WebhookRejected("Webhook secret is not configured.", status=503)
    if not signature:
        raise WebhookRejected("Missing Stripe-Signature header.")
    try:
        stripe.WebhookSignature.verify_header(payload.decode("utf-8"), signature, secret,
                                              settings.STRIPE_WEBHOOK_TOLERANCE)
    except UnicodeDecodeError:
        raise WebhookRejected("Body is not UTF-8.") from None
    except stripe.SignatureVerificationError as exc:
        reason = "timestamp outside the tolerance" if "tolerance" in str(exc) else "signature does not match"
        raise WebhookRejected(f"Invalid Stripe signature ({reason}).") from None
    # stripe-python only rejects old timestamps; a signature dated in the future would stay replayable for longer.
    # The item stripe-python verified (the first "t"), which must be exactly t=<digits> as Stripe sends it.
    items = [part.split("=", 2) for part in signature.split(",")]
    stamp = next((item for item in items if item[0] == "t"), [])
    if len(stamp) != 2 or not (stamp[1].isascii() and stamp[1].isdigit()):
        raise WebhookRejected("Invalid Stripe signature (malformed timestamp).")
    timestamp = int(stamp[1])
    if timestamp > time.time() + settings.STRIPE_WEBHOOK_TOLERANCE:
        raise WebhookRejected("Invalid Stripe signature (timestamp outside the tolerance).")
    try:
        event = json.loads(payload)
    except (ValueError, RecursionError):  # RecursionError: deeply nested arrays
        raise WebhookRejected("Body is not JSON.") from None
    if not isinstance(event, dict) or event.get("object") != "event" or not str(event.get("id", "")).startswith("evt_") \
            or not isinstance(event.get("type"), str) or not isinstance(event.get("data"), dict):
        raise WebhookRejected("Body is not a Stripe event.")
    created = event.get("created")
    if created is not None and (isinstance(created, bool) or not isinstance(created, int)
                                or not 0 <= created <= MAX_STRIPE_TIMESTAMP):
        raise WebhookRejected("The event's created is not a Unix timestamp in range.")
    return event


def webhook_event_store(*, event: dict, enqueue: bool = True) -> tuple[WebhookEvent, bool]:
    """Store the event once per Stripe id. Returns (row, created); a duplicate only counts a delivery.
    Processing is enqueued with the row (and again for a duplicate not yet done)."""
    obj = so.event_object(event)
    row = WebhookEvent(
        stripe_id=event["id"][:255], type=event["type"][:100], livemode=bool(event.get("livemode")),
        api_version=(event.get("api_version") or "")[:64],
        stripe_created=so.event_created(event) or timezone.now(),
        object_id=str(obj.get("id") or "")[:255], payload=event,
    )
    # The first delivery is one INSERT and one commit, no savepoint: this is the hot path Stripe waits on.
    try:
        with transaction.atomic():
            row.save(force_insert=True)
            if enqueue:
                _enqueue_with_row(row.pk)
        return row, True
    except IntegrityError:
        pass
    with transaction.atomic():
        WebhookEvent.objects.filter(stripe_id=row.stripe_id).update(deliveries=F("deliveries") + 1)
        row = WebhookEvent.objects.only("pk", "status", "stripe_id").get(stripe_id=row.stripe_id)
        if enqueue and row.status == WebhookEvent.Status.RECEIVED:
            _enqueue_with_row(row.pk)
    return row, False


def _enqueue_with_row(pk: int) -> None:
    """With django-q2's ORM broker the task row commits in the same transaction as the event (an
    outbox: both or neither); with another broker it is sent once the event has committed."""
    if "orm" in settings.Q_CLUSTER and not settings.Q_CLUSTER.get("sync"):
        _enqueue_process(pk, raise_errors=True)
    else:
        transaction.on_commit(lambda: _enqueue_process(pk))


def _enqueue_process(pk: int, *, raise_errors: bool = False) -> None:
    from django_q.tasks import async_task

    try:
        async_task("billing_console.stripe.tasks.webhook_event_process", pk, save=False)  # the inbox row is the record
    except Exception:  # the row is stored; the retry cron applies it if the queue is unreachable
        if raise_errors:  # inside the event's transaction: fail both, Stripe delivers again
            raise
        log.exception("could not enqueue webhook event %s", pk)


# --- Processing ---------------------------------------------------------------------------------
def _backoff(attempts: int) -> timedelta:
    return min(timedelta(seconds=BACKOFF_BASE_SECONDS * 2 ** max(attempts - 1, 0)), BACKOFF_MAX)


def _error_text(exc: BaseException) -> str:
    return redact(f"{type(exc).__name__}: {exc}")[:2000]


def webhook_event_process(*, webhook_event_id: int, force: bool = False) -> str:
    """Apply one stored event. Returns "processed", "failed" or "skipped" (someone else has it, or it is
    done / not due). `force` (replay) also takes failed-not-due and processed events."""
    now = timezone.now()
    claimable = (Q(status=WebhookEvent.Status.RECEIVED)
                 | Q(status=WebhookEvent.Status.FAILED, next_attempt_at__lte=now)
                 | Q(status=WebhookEvent.Status.PROCESSING, next_attempt_at__lte=now))
    if force:
        claimable |= Q(status__in=[WebhookEvent.Status.FAILED, WebhookEvent.Status.PROCESSED,
                                   WebhookEvent.Status.IGNORED])
    claimed = WebhookEvent.objects.filter(claimable, pk=webhook_event_id).update(
        status=WebhookEvent.Status.PROCESSING, next_attempt_at=now + _processing_lease())
    if not claimed:
        return "skipped"
    row = WebhookEvent.objects.get(pk=webhook_event_id)
    event = row.payload
    due = mirror.mirror_due(event)
    try:
        # Reads Stripe when a receiver needs more than the payload (a subscription's customer email):
        # here, before the transaction, never while the receivers hold row locks.
        event = event_bus.prepare(event)
        with transaction.atomic():
            ran = event_bus.dispatch(event)
            # A type no receiver handles is stored and deliberately ignored, never failed.
            status = WebhookEvent.Status.PROCESSED if ran else WebhookEvent.Status.IGNORED
            WebhookEvent.objects.filter(pk=row.pk).update(
                status=status, processed_at=timezone.now(), attempts=F("attempts") + 1,
                last_error="", next_attempt_at=None,
                **({"mirror": WebhookEvent.Mirror.DUE, "mirror_error": ""} if due else {}))
            if due:
                transaction.on_commit(mirror.mirror_kick, robust=True)
    except Exception as exc:
        attempts = row.attempts + 1
        retry_at = now + _backoff(attempts) if attempts < settings.STRIPE_EVENT_MAX_ATTEMPTS else None
        WebhookEvent.objects.filter(pk=row.pk).update(
            status=WebhookEvent.Status.FAILED, attempts=attempts, last_error=_error_text(exc), next_attempt_at=retry_at)
        log.warning("stripe event %s (%s) failed, attempt %s: %s", row.stripe_id, row.type, attempts, _error_text(exc),
                    exc_info=True, extra={"event": "webhook_failed", "stripe_event": row.stripe_id,
                                          "stripe_type": row.type, "attempts": attempts})
        return "failed"
    if not ran:
        log.info("stripe event %s (%s) ignored: no receiver", row.stripe_id, row.type,
                 extra={"event": "webhook_ignored", "stripe_event": row.stripe_id, "stripe_type": row.type})
        return "ignored"
    log.info("stripe event %s (%s) processed by receivers: %s", row.stripe_id, row.type, ran,
             extra={"event": "webhook_processed", "stripe_event": row.stripe_id, "stripe_type": row.type})
    return "processed"


def webhook_events_retry_due(*, limit: int = 500) -> dict:
    """The retry cron: failed events whose backoff is over, claims whose worker died, and events whose
    enqueue was lost; oldest Stripe time first."""
    now = timezone.now()
    due = (WebhookEvent.objects
           .filter(Q(status__in=[WebhookEvent.Status.FAILED, WebhookEvent.Status.PROCESSING], next_attempt_at__lte=now)
                   | Q(status=WebhookEvent.Status.RECEIVED, received_at__lte=now - _not_enqueued_after()))
           .order_by("stripe_created", "pk").values_list("pk", flat=True)[:limit])
    counts = {"processed": 0, "ignored": 0, "failed": 0, "skipped": 0}
    for pk in list(due):
        counts[webhook_event_process(webhook_event_id=pk)] += 1
    return counts


def webhook_events_replay(*, events: QuerySet | list[WebhookEvent], actor_type: str, actor: str = "") -> dict:
    """Re-run processing for these events through the same path (admin action, replay_events)."""
    counts = {"processed": 0, "ignored": 0, "failed": 0, "skipped": 0}
    for row in sorted(events, key=lambda r: (r.stripe_created, r.pk)):
        with transaction.atomic():
            audit_log(actor_type=actor_type, actor=actor, action="webhook_event.replayed", target=row,
                      data={"stripe_id": row.stripe_id, "status_before": row.status})
        counts[webhook_event_process(webhook_event_id=row.pk, force=True)] += 1
    return counts


def webhook_events_selector(*, failed_only: bool = False, stripe_ids: list[str] | None = None,
                            since: datetime | None = None) -> QuerySet:
    qs = WebhookEvent.objects.all()
    if failed_only:
        qs = qs.filter(status=WebhookEvent.Status.FAILED)
    if stripe_ids:
        qs = qs.filter(stripe_id__in=stripe_ids)
    if since:
        qs = qs.filter(stripe_created__gte=since)
    return qs.order_by("stripe_created", "pk")
