"""The Stripe event inbox: verify, store once, answer; then apply in a worker, once, all or nothing.
The inbox rows are the queue: no task per event.

    webhook view --verify--> webhook_event_store() --one INSERT per evt_ id (autocommit)--> 200
                                                   `-- on commit: webhook_events_wake(): enqueue a drain task
                                                       unless one is queued already (the InboxWake row)
    worker: webhook_events_drain()  deletes the wake row (a later event wakes another drain), then until
            no received event is left: claim a batch, oldest Stripe time first (FOR UPDATE SKIP LOCKED:
            concurrent drains take disjoint batches; a full batch wakes one more drain, so a backlog
            spreads over the free workers) -> each event: dispatch.prepare() (Stripe reads, no
            transaction) -> its own transaction: dispatch.dispatch() -> processed (or ignored: no
            receiver for the type), mirror due -> on commit, kick the dj-stripe mirror
            (billing_console.stripe.mirror, its own task; a failure is a warning)
            a receiver exception rolls that event back -> failed, attempts+1, next_attempt_at (backoff);
            the rest of the batch goes on
    cron stripe_events_retry: failed-and-due, stuck in processing past the lease, never drained.
    cron stripe_events_prune: applied events older than STRIPE_EVENT_RETENTION_DAYS, in batches.
    replay (admin, manage.py replay_events): webhook_event_process(), one event, forced.
"""
from __future__ import annotations

import functools
import json
import logging
import time
from datetime import datetime, timedelta

import stripe
from django.conf import settings
from django.db import connection, transaction
from django.db.models import F, Q, QuerySet
from django.utils import timezone

from billing_console.errors import ServiceError
from billing_console.models import InboxWake, WebhookEvent
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
    Once the row is committed a drain is woken (also for a duplicate not yet applied)."""
    obj = so.event_object(event)
    row = WebhookEvent(
        stripe_id=event["id"][:255], type=event["type"][:100], livemode=bool(event.get("livemode")),
        api_version=(event.get("api_version") or "")[:64],
        stripe_created=so.event_created(event) or timezone.now(),
        object_id=str(obj.get("id") or "")[:255], payload=event,
    )
    row.pk = _insert_once(row)
    if row.pk is not None:
        if enqueue:
            transaction.on_commit(webhook_events_wake)
        return row, True
    with transaction.atomic():
        WebhookEvent.objects.filter(stripe_id=row.stripe_id).update(deliveries=F("deliveries") + 1)
        row = WebhookEvent.objects.only("pk", "status", "stripe_id").get(stripe_id=row.stripe_id)
        if enqueue and row.status == WebhookEvent.Status.RECEIVED:
            transaction.on_commit(webhook_events_wake)
    return row, False


@functools.cache
def _insert_statement(vendor: str) -> tuple[list, str]:
    fields = [f for f in WebhookEvent._meta.concrete_fields if not f.primary_key]
    quote = connection.ops.quote_name
    return fields, (f"INSERT INTO {quote(WebhookEvent._meta.db_table)} ({', '.join(quote(f.column) for f in fields)}) "
                    f"VALUES ({', '.join(['%s'] * len(fields))}) ON CONFLICT ({quote('stripe_id')}) DO NOTHING "
                    f"RETURNING {quote(WebhookEvent._meta.pk.column)}")


def _insert_once(row: WebhookEvent) -> int | None:
    """The hot path Stripe waits on: one INSERT ... ON CONFLICT (stripe_id) DO NOTHING that commits
    itself (outside a caller's transaction), every column of the model. The new id, None for a duplicate."""
    fields, sql = _insert_statement(connection.vendor)
    with connection.cursor() as cursor:
        cursor.execute(sql, [f.get_db_prep_save(f.pre_save(row, add=True), connection) for f in fields])
        found = cursor.fetchone()
    return found[0] if found else None


DRAIN_TASK = "billing_console.stripe.tasks.webhook_events_drain"
# A wake row older than this is taken as a drain task that was lost (a broker restart): the next event
# enqueues another. Events a lost wake leaves behind are applied by the retry cron after the grace period.
WAKE_STALE_AFTER = timedelta(seconds=10)


def webhook_events_wake() -> bool:
    """Enqueue a drain unless one is queued and not started yet (the InboxWake row, created or refreshed
    when stale in one statement). Returns whether it enqueued. Never raises: the events are stored."""
    now = timezone.now()
    table = connection.ops.quote_name(InboxWake._meta.db_table)
    adapt = connection.ops.adapt_datetimefield_value
    try:
        with connection.cursor() as cursor:
            # Nothing is written (nor locked, nor flushed at commit) while a fresh wake row is there:
            # ON CONFLICT DO UPDATE would lock the row even when its WHERE is false.
            cursor.execute(f"INSERT INTO {table} (id, requested_at) SELECT 1, %s WHERE NOT EXISTS "
                           f"(SELECT 1 FROM {table} WHERE requested_at >= %s) ON CONFLICT (id) DO UPDATE "
                           f"SET requested_at = excluded.requested_at WHERE {table}.requested_at < %s",
                           [adapt(now), adapt(now - WAKE_STALE_AFTER), adapt(now - WAKE_STALE_AFTER)])
            if cursor.rowcount != 1:
                return False
        from django_q.tasks import async_task

        async_task(DRAIN_TASK, save=False)  # the inbox rows are the record
    except Exception:
        log.exception("could not wake the Stripe event drain")
        return False
    return True


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
    return _apply(WebhookEvent.objects.get(pk=webhook_event_id))


def _apply(row: WebhookEvent) -> str:
    """Apply a claimed event in its own transaction: "processed", "ignored", or "failed" with its retry set."""
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
        retry_at = timezone.now() + _backoff(attempts) if attempts < settings.STRIPE_EVENT_MAX_ATTEMPTS else None
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


def webhook_events_claim(*, limit: int) -> tuple[list[WebhookEvent], datetime]:
    """Take up to `limit` received events for this worker, oldest Stripe time first; returns them in that
    order with the lease they were claimed until. PostgreSQL: FOR UPDATE SKIP LOCKED, so concurrent
    drains take disjoint batches without waiting on each other; SQLite (one writer at a time): each
    row by a conditional UPDATE."""
    lease_until = timezone.now() + _processing_lease()
    queue = WebhookEvent.objects.filter(status=WebhookEvent.Status.RECEIVED).order_by("stripe_created", "pk")
    if connection.features.has_select_for_update_skip_locked:
        with transaction.atomic():
            ids = list(queue.select_for_update(skip_locked=True).values_list("pk", flat=True)[:limit])
            WebhookEvent.objects.filter(pk__in=ids).update(status=WebhookEvent.Status.PROCESSING,
                                                           next_attempt_at=lease_until)
    else:
        ids = [pk for pk in queue.values_list("pk", flat=True)[:limit]
               if WebhookEvent.objects.filter(pk=pk, status=WebhookEvent.Status.RECEIVED).update(
                   status=WebhookEvent.Status.PROCESSING, next_attempt_at=lease_until)]
    rows = list(WebhookEvent.objects.filter(pk__in=ids).order_by("stripe_created", "pk")) if ids else []
    return rows, lease_until


def _drain_seconds() -> float:
    """How long one drain task keeps claiming: well inside django-q2's task timeout and the lease."""
    return min(30.0, settings.Q_CLUSTER.get("timeout", 300) / 2, settings.STRIPE_EVENT_PROCESSING_LEASE_SECONDS / 2)


def webhook_events_drain(*, batch_size: int | None = None) -> dict:
    """The worker: apply received events in batches until none are left, each event in its own
    transaction, so one bad event never blocks the rest. Ends after _drain_seconds() and wakes another
    drain when work is left, so one task never outlives the queue's timeout or its lease."""
    InboxWake.objects.filter(pk=1).delete()  # from here on a newly stored event wakes another drain
    batch_size = batch_size or settings.STRIPE_EVENT_BATCH_SIZE
    counts = {"processed": 0, "ignored": 0, "failed": 0, "released": 0}
    budget = _drain_seconds()
    started = time.monotonic()
    while time.monotonic() - started < budget:
        rows, lease_until = webhook_events_claim(limit=batch_size)
        if not rows:
            mirror.mirror_resume_after_backlog()
            return counts
        if len(rows) == batch_size:  # a backlog: let another free worker drain beside this one
            webhook_events_wake()
        claimed_at = time.monotonic()
        for i, row in enumerate(rows):
            if time.monotonic() - claimed_at > budget:  # the lease may be running out: give the rest back
                counts["released"] += WebhookEvent.objects.filter(
                    pk__in=[r.pk for r in rows[i:]], status=WebhookEvent.Status.PROCESSING,
                    next_attempt_at=lease_until).update(status=WebhookEvent.Status.RECEIVED, next_attempt_at=None)
                break
            counts[_apply(row)] += 1
    webhook_events_wake()
    return counts


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


# Applied events kept this long are enough to answer support and to replay; older ones only slow the
# table down. Events not applied (received, processing, failed) are kept whatever their age.
PRUNABLE = (WebhookEvent.Status.PROCESSED, WebhookEvent.Status.IGNORED)


def webhook_events_prune(*, older_than_days: int, batch_size: int = 5000) -> int:
    """Delete applied events whose Stripe time is older than `older_than_days`, `batch_size` rows per
    statement (short transactions: the webhook view and the drains keep writing). Returns how many."""
    if older_than_days < 1:
        raise ServiceError("invalid_retention", "Keep applied events at least one day.")
    cutoff = timezone.now() - timedelta(days=older_than_days)
    old = WebhookEvent.objects.filter(status__in=PRUNABLE, stripe_created__lt=cutoff).order_by()
    deleted = 0
    while ids := list(old.values_list("pk", flat=True)[:batch_size]):
        deleted += WebhookEvent.objects.filter(pk__in=ids, status__in=PRUNABLE).delete()[0]
    return deleted


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
