"""Usage billing: take usage events from the product's backend, report their totals to Stripe's billing
meters exactly once, and read the same numbers back for the customer, support and reconciliation.

Ingestion is one `INSERT ... ON CONFLICT DO NOTHING` per request on the (customer, idempotency_key)
unique constraint: a repeated key, even sent concurrently, is stored once, and the rows the insert
returned are the accepted count.

Reporting is claim -> commit -> send -> record:
1. claim (one transaction, serialized by an advisory lock on PostgreSQL): unreported events are grouped
   per customer, meter and window into `UsageReport` rows, each with a Stripe `identifier` derived from
   its content, and the events are attached to them; set-based SQL, a handful of statements whatever
   the number of events;
2. send (no transaction, no lock held): each due report becomes one meter event carrying its
   identifier, so a retry after a crash or a timeout is deduplicated by Stripe (a repeat answers
   `duplicate_meter_event`, taken as already counted);
3. record: sent, retry later with backoff (transient errors) or failed for support (a customer Stripe
   does not know, an archived meter, a timestamp out of range).
"""
from __future__ import annotations

import hashlib
import logging
import re
from collections import defaultdict
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone as dt_timezone
from decimal import Decimal

from django.conf import settings
from django.db import connection, transaction
from django.db.models import Count, F, Max, Min, Q
from django.utils import timezone
from django.utils.dateparse import parse_datetime

from billing_console.wording import counted
from billing_console.errors import ServiceError
from billing_console.models import AuditEvent, Customer, UsageEvent, UsageReport
from billing_console.ops.logging import redact
from billing_console.invoicing.usage_meters import CUSTOMER_KEY, VALUE_KEY
from billing_console.services import audit_log
from billing_console.stripe import gateway as stripe_gateway

log = logging.getLogger("billing_console.usage")

MAX_PAST = timedelta(days=35)
MAX_FUTURE = timedelta(minutes=5)
QUANTITY = re.compile(r"^\d{1,18}(\.\d{1,6})?$")
KEY_MAX = 255
_CLAIM_LOCK = 0x75736167  # "usag": one claimer at a time (PostgreSQL advisory lock key)


class UsageError(ServiceError):
    """A usage service refused its input: `code` and `message` for the JSON error shape, `status` for HTTP,
    `errors` the per-item details (index, field, code, message)."""

    def __init__(self, code: str, message: str, *, status: int = 400, errors: list[dict] | None = None):
        super().__init__(code, message)
        self.status, self.errors = status, errors or []


# --- Ingestion --------------------------------------------------------------------------------
@dataclass
class _Clean:
    index: int
    customer_ref: str
    meter: str
    quantity: Decimal
    timestamp: datetime
    key: str


def _item_error(index: int, field: str, code: str, message: str, status: int = 400) -> dict:
    return {"index": index, "field": field, "code": code, "message": message, "status": status}


def _parse_quantity(value) -> Decimal | None:
    if isinstance(value, bool):
        return None
    if isinstance(value, int):
        return Decimal(value) if 0 <= value < 10 ** 18 else None
    if isinstance(value, str) and QUANTITY.match(value.strip()):
        return Decimal(value.strip())
    return None


def _parse_timestamp(value) -> datetime | None:
    if isinstance(value, bool):
        return None
    if isinstance(value, int):
        try:
            return datetime.fromtimestamp(value, tz=dt_timezone.utc)
        except (OverflowError, OSError, ValueError):
            return None
    if isinstance(value, str):
        try:
            parsed = parse_datetime(value.strip())
        except ValueError:
            return None
        if parsed is not None and parsed.tzinfo is not None:
            return parsed
    return None


def _clean_event(index: int, event, now: datetime, errors: list[dict]) -> _Clean | None:
    if not isinstance(event, dict):
        errors.append(_item_error(index, "event", "invalid", "Each event is a JSON object."))
        return None
    before = len(errors)
    unknown = set(event) - {"customer", "meter", "quantity", "timestamp", "idempotency_key"}
    if unknown:
        errors.append(_item_error(index, sorted(unknown)[0], "unknown_field", "Unknown field."))
    customer, meter, key = event.get("customer"), event.get("meter"), event.get("idempotency_key")
    if not isinstance(customer, str) or not customer.strip() or len(customer) > 254:
        errors.append(_item_error(index, "customer", "required", "The customer's email or Stripe id (cus_...)."))
    if not isinstance(meter, str) or not meter.strip() or len(meter) > 64:
        errors.append(_item_error(index, "meter", "required", "One of the configured meters."))
    if not isinstance(key, str) or not key.strip() or len(key) > KEY_MAX:
        errors.append(_item_error(index, "idempotency_key", "required", f"A string of 1 to {KEY_MAX} characters."))
    quantity = _parse_quantity(event.get("quantity"))
    if quantity is None:
        errors.append(_item_error(index, "quantity", "invalid",
                                  "A non-negative integer or decimal string (at most 6 decimals)."))
    timestamp = now
    if event.get("timestamp") is not None:
        timestamp = _parse_timestamp(event["timestamp"])
        if timestamp is None:
            errors.append(_item_error(index, "timestamp", "invalid",
                                      "Unix seconds or an ISO 8601 time with its offset."))
        elif timestamp < now - MAX_PAST:
            errors.append(_item_error(index, "timestamp", "too_old", "At most 35 days old."))
        elif timestamp > now + MAX_FUTURE:
            errors.append(_item_error(index, "timestamp", "in_future", "At most 5 minutes in the future."))
    if len(errors) > before:
        return None
    return _Clean(index, customer.strip(), meter.strip(), quantity, timestamp, key.strip())


def _customers_by_ref(refs: set[str]) -> dict[str, tuple[int, str]]:
    """SQLite's path: ref (lower-case email or cus_ id) -> (customer pk, Stripe customer id), in one query;
    plain tuples, no model instances (a batch names up to 1,000 customers)."""
    ids = [r for r in refs if r.startswith("cus_")]
    emails = list({r.lower() for r in refs if not r.startswith("cus_")})
    table = connection.ops.quote_name(Customer._meta.db_table)
    marks = lambda n: ", ".join(["%s"] * n) or "NULL"  # noqa: E731
    sql = (f"SELECT id, lower(email), stripe_customer_id FROM {table} "
           f"WHERE lower(email) IN ({marks(len(emails))}) OR stripe_customer_id IN ({marks(len(ids))})")
    params = emails + ids
    by_ref = {}
    with connection.cursor() as cursor:
        cursor.execute(sql, params)
        for pk, email, stripe_id in cursor.fetchall():
            by_ref[email] = (pk, stripe_id or "")
            if stripe_id:
                by_ref[stripe_id] = (pk, stripe_id)
    return by_ref


def window_of(timestamp: datetime) -> int:
    width = max(1, int(settings.USAGE_REPORT_WINDOW_SECONDS))
    return int(timestamp.timestamp()) // width * width


def usage_events_ingest(*, events: list, atomic: bool = False, now: datetime | None = None) -> dict:
    """Store usage events once each. Returns {"accepted", "duplicate", "errors"}.

    Malformed input (a missing or wrong field) rejects the whole request: UsageError 400 with every
    field error. An unknown customer or meter is a 422 per item: the other items are stored and the
    item is listed in `errors`; with `atomic`, any such item rejects the whole batch (UsageError 422)
    and nothing is written. Nothing accepted and only 422 items is a UsageError 422 too.
    """
    now = now or timezone.now()
    if not isinstance(events, list) or not events:
        raise UsageError("invalid_input", "Send one event or {\"events\": [...]} with at least one event.")
    if len(events) > settings.USAGE_MAX_EVENTS_PER_REQUEST:
        raise UsageError("too_many_events", f"At most {settings.USAGE_MAX_EVENTS_PER_REQUEST} events a request.",
                         status=413)
    errors: list[dict] = []
    clean = [c for i, e in enumerate(events) if (c := _clean_event(i, e, now, errors)) is not None]
    if errors:
        raise UsageError("invalid_input", "Some fields need attention; nothing was stored.", errors=errors)

    meters = settings.USAGE_METERS
    if connection.vendor == "postgresql":
        return _ingest_postgresql(clean, atomic=atomic, received=now)
    customers = _customers_by_ref({c.customer_ref for c in clean})
    rows, rejected = [], []
    for c in clean:
        customer = customers.get(c.customer_ref) or customers.get(c.customer_ref.lower())
        if c.meter not in meters:
            rejected.append(_item_error(c.index, "meter", "unknown_meter",
                                        f"Unknown meter; configured: {', '.join(sorted(meters)) or 'none'}.", 422))
        elif customer is None:
            rejected.append(_item_error(c.index, "customer", "unknown_customer", "No such customer.", 422))
        elif not customer[1]:
            rejected.append(_item_error(c.index, "customer", "customer_not_billable",
                                        "This customer has no Stripe billing account yet.", 422))
        else:
            rows.append((customer[0], c.meter, c.quantity, c.timestamp, window_of(c.timestamp), c.key))
    if rejected and (atomic or not rows):
        raise UsageError("unprocessable", "Nothing was stored: some events name an unknown customer or meter.",
                         status=422, errors=rejected)
    accepted = _insert_ignoring_duplicates(rows, received=now)
    return {"accepted": accepted, "duplicate": len(rows) - accepted, "errors": rejected}


def _unknown_meter(index: int) -> dict:
    return _item_error(index, "meter", "unknown_meter",
                       f"Unknown meter; configured: {', '.join(sorted(settings.USAGE_METERS)) or 'none'}.", 422)


def _customer_error(index: int, known: bool) -> dict:
    if known:
        return _item_error(index, "customer", "customer_not_billable",
                           "This customer has no Stripe billing account yet.", 422)
    return _item_error(index, "customer", "unknown_customer", "No such customer.", 422)


def _ingest_postgresql(clean: list[_Clean], *, atomic: bool, received: datetime) -> dict:
    """One statement and one round trip: resolve each event's customer (by Stripe id, or by lower(email)
    through the unique index), insert the resolvable ones with ON CONFLICT DO NOTHING (none at all
    when `atomic` and any is not), and answer the counts and the unresolved items."""
    rejected = [_unknown_meter(c.index) for c in clean if c.meter not in settings.USAGE_METERS]
    if rejected and atomic:
        raise UsageError("unprocessable", "Nothing was stored: some events name an unknown customer or meter.",
                         status=422, errors=rejected)
    items = [c for c in clean if c.meter in settings.USAGE_METERS]
    accepted = eligible = 0
    if items:
        events = connection.ops.quote_name(UsageEvent._meta.db_table)
        customers = connection.ops.quote_name(Customer._meta.db_table)
        sql = (
            f"WITH u AS (SELECT * FROM unnest(%s::int[], %s::text[], %s::text[], %s::text[], %s::text[], "
            f"%s::bigint[], %s::text[]) AS u(i, ref, m, q, t, w, k)), "
            f"r AS (SELECT DISTINCT ON (u.i) u.*, COALESCE(s.id, e.id) AS cid, "
            f"COALESCE(s.stripe_customer_id, e.stripe_customer_id, '') AS sid FROM u "
            f"LEFT JOIN {customers} s ON u.ref LIKE 'cus\\_%%' AND s.stripe_customer_id = u.ref "
            f"LEFT JOIN {customers} e ON u.ref NOT LIKE 'cus\\_%%' AND lower(e.email) = lower(u.ref) "
            f"ORDER BY u.i, s.id, e.id), "
            f"ok AS (SELECT * FROM r WHERE cid IS NOT NULL AND sid <> ''), "
            f"ins AS (INSERT INTO {events} (customer_id, meter, quantity, timestamp, window_start, idempotency_key, "
            f"received_at) SELECT cid, m, q::numeric, t::timestamptz, w, k, %s FROM ok "
            f"WHERE NOT %s OR NOT EXISTS (SELECT 1 FROM r WHERE cid IS NULL OR sid = '') "
            f"ON CONFLICT (customer_id, idempotency_key) DO NOTHING RETURNING 1) "
            f"SELECT -1, (SELECT count(*) FROM ok)::int, (SELECT count(*) FROM ins)::int "
            f"UNION ALL SELECT i, CASE WHEN cid IS NULL THEN 0 ELSE 1 END, 0 FROM r WHERE cid IS NULL OR sid = ''")
        params = [[c.index for c in items], [c.customer_ref for c in items], [c.meter for c in items],
                  [str(c.quantity) for c in items], [c.timestamp.isoformat() for c in items],
                  [window_of(c.timestamp) for c in items], [c.key for c in items], received, atomic]
        with connection.cursor() as cursor:
            cursor.execute(sql, params)
            for index, known, inserted in cursor.fetchall():
                if index == -1:
                    eligible, accepted = known, inserted
                else:
                    rejected.append(_customer_error(index, bool(known)))
    rejected.sort(key=lambda e: e["index"])
    if rejected and (atomic or not eligible):
        raise UsageError("unprocessable", "Nothing was stored: some events name an unknown customer or meter.",
                         status=422, errors=rejected)
    return {"accepted": accepted, "duplicate": eligible - accepted, "errors": rejected}


def _insert_ignoring_duplicates(rows: list[tuple], *, received: datetime) -> int:
    """SQLite's path: INSERT ... ON CONFLICT DO NOTHING RETURNING (SQLite >= 3.35 answers only the
    inserted rows), so the returned rows are the accepted count."""
    if not rows:
        return 0
    table = connection.ops.quote_name(UsageEvent._meta.db_table)
    adapt_dt = connection.ops.adapt_datetimefield_value
    adapt_dec = connection.ops.adapt_decimalfield_value
    params = []
    for customer_id, meter, quantity, timestamp, window, key in rows:
        params += [customer_id, meter, adapt_dec(quantity, 24, 6), adapt_dt(timestamp), window, key, adapt_dt(received)]
    values = ", ".join(["(%s, %s, %s, %s, %s, %s, %s)"] * len(rows))
    with connection.cursor() as cursor:
        cursor.execute(f"INSERT INTO {table} (customer_id, meter, quantity, timestamp, window_start, idempotency_key, "
                       f"received_at) VALUES {values} ON CONFLICT (customer_id, idempotency_key) DO NOTHING RETURNING 1",
                       params)
        return len(cursor.fetchall())


# --- Reporting: claim ---------------------------------------------------------------------------
def _identifier(customer_id: int, meter: str, window: int, first_event_id: int) -> str:
    """Stable for the claimed content (each event belongs to one report): at most 100 characters."""
    digest = hashlib.sha256(f"{customer_id}|{meter}|{window}|{first_event_id}".encode()).hexdigest()[:40]
    return f"bcu_{digest}"


def usage_reports_claim(*, now: datetime | None = None) -> int:
    """Group every unreported event into reports (one per customer, meter and window) and attach the
    events. Returns the number of reports created. A handful of statements, whatever the event count."""
    now = now or timezone.now()
    event_table = connection.ops.quote_name(UsageEvent._meta.db_table)
    report_table = connection.ops.quote_name(UsageReport._meta.db_table)
    with transaction.atomic():
        if connection.vendor == "postgresql":
            with connection.cursor() as cursor:
                cursor.execute("SELECT pg_advisory_xact_lock(%s)", [_CLAIM_LOCK])
        groups = list(UsageEvent.objects.filter(report__isnull=True).order_by()
                      .values("customer_id", "meter", "window_start")
                      .annotate(first=Min("id"), last=Max("timestamp")))
        if not groups:
            return 0
        reports = UsageReport.objects.bulk_create([
            UsageReport(customer_id=g["customer_id"], meter=g["meter"], window_start=g["window_start"],
                        event_timestamp=g["last"], claimed_at=now, state=UsageReport.State.PENDING,
                        identifier=_identifier(g["customer_id"], g["meter"], g["window_start"], g["first"]))
            for g in groups], batch_size=2000)
        low, high = min(r.pk for r in reports), max(r.pk for r in reports)
        with connection.cursor() as cursor:
            # Events committed after the grouping above may join a report too: its totals are computed
            # next from the events actually attached, never from the grouping.
            cursor.execute(
                f"UPDATE {event_table} SET report_id = r.id FROM {report_table} AS r "
                f"WHERE r.id BETWEEN %s AND %s AND {event_table}.report_id IS NULL "
                f"AND {event_table}.customer_id = r.customer_id AND {event_table}.meter = r.meter "
                f"AND {event_table}.window_start = r.window_start", [low, high])
            cursor.execute(
                f"UPDATE {report_table} SET quantity = s.q, event_count = s.n, event_timestamp = s.last FROM "
                f"(SELECT report_id, SUM(quantity) AS q, COUNT(*) AS n, MAX(timestamp) AS last FROM {event_table} "
                f"WHERE report_id BETWEEN %s AND %s GROUP BY report_id) AS s WHERE {report_table}.id = s.report_id",
                [low, high])
        counted = [key for key, meter in settings.USAGE_METERS.items() if meter["formula"] == "count"]
        created = UsageReport.objects.filter(pk__range=(low, high))
        if counted:
            created.filter(meter__in=counted).update(quantity=F("event_count"))
        created.filter(event_count=0).delete()
    log.info("usage claimed %d reports", len(reports), extra={"event": "usage_claimed", "reports": len(reports)})
    return len(reports)


# --- Reporting: send and record ---------------------------------------------------------------------
def _due(now: datetime) -> Q:
    S = UsageReport.State
    return (Q(state=S.PENDING) | Q(state=S.RETRY, next_attempt_at__lte=now)
            | Q(state=S.SENDING, next_attempt_at__lte=now))  # a sender that died: its lease ran out


def _backoff(attempts: int) -> timedelta:
    base = settings.USAGE_REPORT_RETRY_BASE_SECONDS
    return timedelta(seconds=min(settings.USAGE_REPORT_RETRY_MAX_SECONDS, base * 2 ** max(0, attempts - 1)))


def _claim_batch(now: datetime, size: int) -> list[tuple]:
    with transaction.atomic():
        batch = list(UsageReport.objects.select_for_update(skip_locked=True, of=("self",)).filter(_due(now))
                     .order_by("id").values_list("id", "customer__stripe_customer_id", "meter", "quantity",
                                                  "event_timestamp", "identifier", "attempts")[:size])
        if batch:
            UsageReport.objects.filter(pk__in=[b[0] for b in batch]).update(
                state=UsageReport.State.SENDING, attempts=F("attempts") + 1,
                next_attempt_at=now + timedelta(seconds=settings.USAGE_REPORT_LEASE_SECONDS))
    return batch


def _value_text(quantity: Decimal) -> str:
    return format(Decimal(quantity).normalize(), "f")


def usage_reports_send(*, now: datetime | None = None, max_batches: int | None = None) -> dict:
    """Send every due report (batches of USAGE_REPORT_BATCH_SIZE), recording each outcome."""
    now = now or timezone.now()
    counts = defaultdict(int)
    meters = settings.USAGE_METERS
    batches = 0
    while max_batches is None or batches < max_batches:
        batch = _claim_batch(now, settings.USAGE_REPORT_BATCH_SIZE)
        if not batch:
            break
        batches += 1
        S = UsageReport.State
        updates: list[UsageReport] = []
        failures: list[tuple[int, str, str]] = []
        for pk, stripe_customer_id, meter, quantity, event_timestamp, identifier, attempts in batch:
            attempts += 1
            report = UsageReport(pk=pk, error_code="", error="", next_attempt_at=None, sent_at=None)
            spec = meters.get(meter)
            try:
                if spec is None:
                    raise stripe_gateway.StripeGatewayError(f"The meter {meter!r} is no longer configured.",
                                                            code="no_meter")
                stripe_gateway.meter_event_create(
                    event_name=spec["event_name"], stripe_customer_id=stripe_customer_id or "",
                    value=_value_text(quantity), timestamp=int(event_timestamp.timestamp()), identifier=identifier,
                    customer_key=CUSTOMER_KEY, value_key=VALUE_KEY)
                report.state, report.sent_at = S.SENT, timezone.now()
                counts["sent"] += 1
            except stripe_gateway.StripeGatewayError as exc:
                if exc.code == "duplicate_meter_event":  # an earlier attempt got through: already counted
                    report.state, report.sent_at, report.error_code = S.SENT, timezone.now(), exc.code
                    counts["duplicate"] += 1
                elif (exc.retryable or exc.code in ("authentication", "permission", "not_configured")) \
                        and attempts < settings.USAGE_REPORT_MAX_ATTEMPTS:
                    report.state, report.next_attempt_at = S.RETRY, now + _backoff(attempts)
                    report.error_code, report.error = exc.code, redact(exc.message)[:1000]
                    counts["retry"] += 1
                else:
                    report.state, report.error_code, report.error = S.FAILED, exc.code, redact(exc.message)[:1000]
                    failures.append((pk, exc.code, report.error))
                    counts["failed"] += 1
            updates.append(report)
        with transaction.atomic():
            UsageReport.objects.bulk_update(updates, ["state", "sent_at", "next_attempt_at", "error_code", "error"])
            if failures:
                for report in UsageReport.objects.filter(pk__in=[f[0] for f in failures]).select_related("customer"):
                    audit_log(actor_type=AuditEvent.ActorType.SYSTEM, actor="report_usage",
                              action="usage.report_failed", target=report, customer=report.customer,
                              data={"code": report.error_code, "meter": report.meter, "quantity": str(report.quantity)})
        for pk, code, message in failures:
            log.warning("usage report %s failed: %s", pk, message,
                        extra={"event": "usage_report_failed", "report": pk, "code": code})
    return dict(counts)


def usage_report_run(*, now: datetime | None = None) -> dict:
    """One run of the schedule (and of `manage.py report_usage`): claim, then send what is due."""
    if not settings.USAGE_METERS:
        return {"skipped": "no meters configured"}
    if not stripe_gateway.configured():
        return {"claimed": usage_reports_claim(now=now), "skipped": "Stripe is not configured"}
    claimed = usage_reports_claim(now=now)
    return {"claimed": claimed, **usage_reports_send(now=now)}


def usage_report_preview(*, now: datetime | None = None) -> dict:
    """What a run would do, without writing: unreported events grouped as they would be claimed, and the
    reports already due."""
    now = now or timezone.now()
    unreported = UsageEvent.objects.filter(report__isnull=True).order_by().aggregate(
        events=Count("id"), windows=Count("window_start", distinct=True))
    groups = (UsageEvent.objects.filter(report__isnull=True).order_by()
              .values("customer_id", "meter", "window_start").distinct().count())
    due = UsageReport.objects.filter(_due(now)).count()
    return {"unreported_events": unreported["events"], "reports_to_claim": groups, "reports_due": due}


def usage_report_retry(*, report: UsageReport, actor_type: str, actor: str = "") -> UsageReport:
    """Support: send a failed report again (same identifier, so Stripe still counts it once)."""
    with transaction.atomic():
        report = UsageReport.objects.select_for_update().get(pk=report.pk)
        if report.state != UsageReport.State.FAILED:
            return report
        report.state, report.attempts, report.next_attempt_at = UsageReport.State.RETRY, 0, timezone.now()
        report.save(update_fields=["state", "attempts", "next_attempt_at"])
        audit_log(actor_type=actor_type, actor=actor, action="usage.report_retried", target=report,
                  customer=report.customer, data={"previous_error": report.error_code})
    return report


def usage_report_usage_cron():
    """django-q2 entry point of USAGE_REPORT_SCHEDULE."""
    from billing_console.services import cron_guard

    with cron_guard("report_usage") as run:
        if run is None:
            return "skipped"
        counts = usage_report_run()
        run.counts = {k: v for k, v in counts.items() if isinstance(v, int)}
        return counts
