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
from decimal import ROUND_HALF_UP, Decimal, InvalidOperation

from django.conf import settings
from django.core.cache import cache
from django.db import connection, transaction
from django.db.models import Count, F, Max, Min, Q, Sum
from django.utils import timezone
from django.utils.dateparse import parse_datetime

from billing_console.models import AuditEvent, Customer, UsageEvent, UsageReport
from billing_console.ops.logging import redact
from billing_console.services import audit_log
from billing_console.stripe import gateway as stripe_gateway

log = logging.getLogger("billing_console.usage")

MAX_PAST = timedelta(days=35)
MAX_FUTURE = timedelta(minutes=5)
QUANTITY = re.compile(r"^\d{1,18}(\.\d{1,6})?$")
KEY_MAX = 255
# Stripe payload keys of the meters the console creates.
CUSTOMER_KEY = "stripe_customer_id"
VALUE_KEY = "value"
_CLAIM_LOCK = 0x75736167  # "usag": one claimer at a time (PostgreSQL advisory lock key)


class UsageError(Exception):
    """A usage service refused its input: `code` and `message` for the JSON error shape, `status` for HTTP,
    `errors` the per-item details (index, field, code, message)."""

    def __init__(self, code: str, message: str, *, status: int = 400, errors: list[dict] | None = None):
        super().__init__(message)
        self.code, self.message, self.status, self.errors = code, message, status, errors or []


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


def _customers_by_ref(refs: set[str]) -> dict[str, Customer]:
    """The console customers named by email or Stripe id, in one query."""
    ids = {r for r in refs if r.startswith("cus_")}
    emails = {r.lower() for r in refs - ids}
    found = Customer.objects.filter(Q(stripe_customer_id__in=ids) | Q(email__in=emails)).only(
        "id", "email", "stripe_customer_id")
    by_ref = {}
    for customer in found:
        by_ref[customer.email] = customer
        if customer.stripe_customer_id:
            by_ref[customer.stripe_customer_id] = customer
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
    customers = _customers_by_ref({c.customer_ref for c in clean})
    rows, rejected = [], []
    for c in clean:
        customer = customers.get(c.customer_ref) or customers.get(c.customer_ref.lower())
        if c.meter not in meters:
            rejected.append(_item_error(c.index, "meter", "unknown_meter",
                                        f"Unknown meter; configured: {', '.join(sorted(meters)) or 'none'}.", 422))
        elif customer is None:
            rejected.append(_item_error(c.index, "customer", "unknown_customer", "No such customer.", 422))
        elif not customer.stripe_customer_id:
            rejected.append(_item_error(c.index, "customer", "customer_not_billable",
                                        "This customer has no Stripe billing account yet.", 422))
        else:
            rows.append((customer.pk, c.meter, c.quantity, c.timestamp, window_of(c.timestamp), c.key, now))
    if rejected and (atomic or not rows):
        raise UsageError("unprocessable", "Nothing was stored: some events name an unknown customer or meter.",
                         status=422, errors=rejected)
    accepted = _insert_ignoring_duplicates(rows)
    return {"accepted": accepted, "duplicate": len(rows) - accepted, "errors": rejected}


def _insert_ignoring_duplicates(rows: list[tuple]) -> int:
    """INSERT ... ON CONFLICT DO NOTHING RETURNING: the number of rows actually stored (PostgreSQL and
    SQLite >= 3.35 both answer only the inserted rows)."""
    if not rows:
        return 0
    table = connection.ops.quote_name(UsageEvent._meta.db_table)
    columns = "customer_id, meter, quantity, timestamp, window_start, idempotency_key, received_at"
    adapt_dt = connection.ops.adapt_datetimefield_value
    adapt_dec = connection.ops.adapt_decimalfield_value
    params = []
    for customer_id, meter, quantity, timestamp, window, key, received in rows:
        params += [customer_id, meter, adapt_dec(quantity, 24, 6), adapt_dt(timestamp), window, key, adapt_dt(received)]
    values = ", ".join(["(%s, %s, %s, %s, %s, %s, %s)"] * len(rows))
    with connection.cursor() as cursor:
        cursor.execute(f"INSERT INTO {table} ({columns}) VALUES {values} "
                       f"ON CONFLICT (customer_id, idempotency_key) DO NOTHING RETURNING id", params)
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
    log.info("usage claimed %d report(s)", len(reports), extra={"event": "usage_claimed", "reports": len(reports)})
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


# --- Meters at setup -----------------------------------------------------------------------------
def usage_meters_setup(*, dry_run: bool = False) -> list[dict]:
    """Create the meters of USAGE_METERS that Stripe lacks; check the ones it has (active, summing, the
    payload keys the console sends). Returns one {key, event_name, meter_id, status, problem} per meter."""
    existing = {m["event_name"]: m for m in stripe_gateway.meters_list()}
    results = []
    for key, spec in settings.USAGE_METERS.items():
        meter = existing.get(spec["event_name"])
        result = {"key": key, "event_name": spec["event_name"], "meter_id": meter["id"] if meter else "",
                  "status": "ok", "problem": ""}
        if meter is None:
            if dry_run:
                result["status"] = "missing"
            else:
                meter = stripe_gateway.meter_create(params={
                    "display_name": spec["display_name"], "event_name": spec["event_name"],
                    "default_aggregation": {"formula": "sum"},
                    "customer_mapping": {"type": "by_id", "event_payload_key": CUSTOMER_KEY},
                    "value_settings": {"event_payload_key": VALUE_KEY}}, idempotency_key=f"bc-meter-{spec['event_name']}")
                result.update(meter_id=meter["id"], status="created")
        else:
            problems = []
            if meter.get("status") != "active":
                problems.append("the meter is inactive in Stripe")
            if (meter.get("default_aggregation") or {}).get("formula") != "sum":
                problems.append("its aggregation is not sum (the console sends totals)")
            if (meter.get("customer_mapping") or {}).get("event_payload_key") != CUSTOMER_KEY:
                problems.append(f"its customer payload key is not {CUSTOMER_KEY}")
            if (meter.get("value_settings") or {}).get("event_payload_key") != VALUE_KEY:
                problems.append(f"its value payload key is not {VALUE_KEY}")
            if problems:
                result.update(status="mismatch", problem="; ".join(problems))
        results.append(result)
    cache.set("bc:usage:meter_ids", {r["key"]: r["meter_id"] for r in results if r["meter_id"]}, 3600)
    return results


def usage_meter_ids() -> dict[str, str]:
    """USAGE_METERS key -> Stripe meter id (one list call, cached for an hour)."""
    ids = cache.get("bc:usage:meter_ids")
    if ids is None:
        by_name = {m["event_name"]: m["id"] for m in stripe_gateway.meters_list()}
        ids = {key: by_name[spec["event_name"]] for key, spec in settings.USAGE_METERS.items()
               if spec["event_name"] in by_name}
        cache.set("bc:usage:meter_ids", ids, 3600)
    return ids


# --- Reading the numbers ----------------------------------------------------------------------------
def month_back(moment: datetime) -> datetime:
    """Stripe's monthly anchor one month earlier (the day clamped to the month's length)."""
    import calendar

    year, month = (moment.year, moment.month - 1) if moment.month > 1 else (moment.year - 1, 12)
    return moment.replace(year=year, month=month, day=min(moment.day, calendar.monthrange(year, month)[1]))


def customer_usage_period(customer: Customer, *, now: datetime | None = None) -> tuple[datetime, datetime]:
    """The current billing period: [one month before current_period_end, current_period_end)."""
    now = now or timezone.now()
    end = customer.current_period_end
    if end is None:
        end = now.replace(day=1, hour=0, minute=0, second=0, microsecond=0)
        end = end.replace(year=end.year + (end.month == 12), month=end.month % 12 + 1)
    return month_back(end), end


def plan_usage_price(customer: Customer) -> tuple[str, str]:
    """(metered price id, meter key) of the customer's plan, or ("", "")."""
    plan = settings.PLANS.get(customer.plan or "") or {}
    return plan.get("usage_price_id", ""), plan.get("usage_meter", "")


def price_tiers(price_id: str) -> dict | None:
    """{"tiers_mode", "tiers", "currency"} of a tiered price: dj-stripe's mirror, else Stripe (cached an hour)."""
    if not price_id:
        return None
    key = f"bc:usage:price:{hashlib.sha256(price_id.encode()).hexdigest()[:24]}"
    found = cache.get(key)
    if found is not None:
        return found or None
    found = {}
    try:
        from djstripe.models import Price

        row = Price.objects.filter(id=price_id).values("tiers", "tiers_mode", "currency").first()
        if row and row["tiers"]:
            found = {"tiers": row["tiers"], "tiers_mode": row["tiers_mode"], "currency": row["currency"]}
    except Exception:  # the mirror is optional
        found = {}
    if not found and stripe_gateway.configured():
        try:
            price = stripe_gateway.price_retrieve(price_id, expand=["tiers"])
            if price.get("tiers"):
                found = {"tiers": price["tiers"], "tiers_mode": price.get("tiers_mode"), "currency": price["currency"]}
        except stripe_gateway.StripeGatewayError:
            return None  # not cached: try again next time
    cache.set(key, found, 3600)
    return found or None


def _tier_decimal(tier: dict, name: str) -> Decimal:
    raw = tier.get(f"{name}_decimal")
    if raw in (None, ""):
        raw = tier.get(name)
    try:
        return Decimal(str(raw)) if raw not in (None, "") else Decimal(0)
    except InvalidOperation:
        return Decimal(0)


def tiered_breakdown(tiers: list[dict], mode: str, quantity: Decimal) -> tuple[int, list[dict]]:
    """What `quantity` costs under Stripe tiers, in minor units, and the tiers it reached: graduated
    prices each unit at its tier (plus each reached tier's flat amount), volume all units at the tier
    the total falls in."""
    rows = []
    if not tiers:
        return 0, rows
    if mode == "volume":
        tier = next((t for t in tiers if t.get("up_to") in (None, "inf") or quantity <= Decimal(t["up_to"])), tiers[-1])
        amount = quantity * _tier_decimal(tier, "unit_amount") + _tier_decimal(tier, "flat_amount")
        rows.append({"up_to": tier.get("up_to"), "units": quantity, "unit_amount": _tier_decimal(tier, "unit_amount"),
                     "flat_amount": _tier_decimal(tier, "flat_amount"), "amount": amount})
        total = amount
    else:
        total, lower = Decimal(0), Decimal(0)
        for index, tier in enumerate(tiers):
            if index and quantity <= lower:
                break
            upper = tier.get("up_to")
            upper = None if upper in (None, "inf") else Decimal(upper)
            units = max((quantity if upper is None else min(quantity, upper)) - lower, Decimal(0))
            amount = units * _tier_decimal(tier, "unit_amount") + _tier_decimal(tier, "flat_amount")
            rows.append({"up_to": tier.get("up_to"), "units": units, "unit_amount": _tier_decimal(tier, "unit_amount"),
                         "flat_amount": _tier_decimal(tier, "flat_amount"), "amount": amount})
            total += amount
            if upper is None:
                break
            lower = upper
    rounded = int(total.quantize(Decimal(1), rounding=ROUND_HALF_UP))
    for row in rows:
        row["amount"] = int(row["amount"].quantize(Decimal(1), rounding=ROUND_HALF_UP))
    return rounded, rows


def customer_usage_summary(customer: Customer, *, now: datetime | None = None) -> dict:
    """This period's usage per configured meter, with reporting state and the estimate at the plan's tiers.
    Three queries."""
    start, end = customer_usage_period(customer, now=now)
    totals = {row["meter"]: row for row in UsageEvent.objects.filter(
        customer=customer, timestamp__gte=start, timestamp__lt=end).order_by().values("meter").annotate(
        quantity=Sum("quantity"), events=Count("id"), unreported=Count("id", filter=Q(report__isnull=True)))}
    S = UsageReport.State
    states = {row["meter"]: row for row in UsageReport.objects.filter(customer=customer).order_by().values(
        "meter").annotate(sent=Sum("quantity", filter=Q(state=S.SENT)),
                          pending=Count("id", filter=Q(state__in=[S.PENDING, S.SENDING, S.RETRY])),
                          failed=Count("id", filter=Q(state=S.FAILED)), last_sent=Max("sent_at"))}
    price_id, priced_meter = plan_usage_price(customer)
    meters = []
    for key, spec in settings.USAGE_METERS.items():
        total = totals.get(key, {})
        state = states.get(key, {})
        formula_qty = Decimal(total.get("events") or 0) if spec["formula"] == "count" else (
            total.get("quantity") or Decimal(0))
        row = {"key": key, "name": spec["display_name"], "quantity": formula_qty.normalize() if formula_qty else 0,
               "events": total.get("events") or 0, "unreported_events": total.get("unreported") or 0,
               "reports_pending": state.get("pending") or 0, "reports_failed": state.get("failed") or 0,
               "last_sent_at": state.get("last_sent"), "estimate": None, "currency": "", "tiers": []}
        if key == priced_meter and price_id:
            priced = price_tiers(price_id)
            if priced:
                amount, rows = tiered_breakdown(priced["tiers"], priced["tiers_mode"], formula_qty)
                row.update(estimate=amount, currency=priced["currency"], tiers=rows, tiers_mode=priced["tiers_mode"])
        meters.append(row)
    return {"period_start": start, "period_end": end, "meters": meters}


# --- Reconciliation -----------------------------------------------------------------------------
def usage_reported_totals(*, start: datetime, end: datetime, stripe_customer_id: str = "") -> dict:
    """(stripe customer id, meter key) -> total the console sent to Stripe for events in [start, end)."""
    qs = UsageReport.objects.filter(state=UsageReport.State.SENT, event_timestamp__gte=start, event_timestamp__lt=end)
    if stripe_customer_id:
        qs = qs.filter(customer__stripe_customer_id=stripe_customer_id)
    return {(row["customer__stripe_customer_id"], row["meter"]): row["total"] for row in qs.order_by().values(
        "customer__stripe_customer_id", "meter").annotate(total=Sum("quantity"))}


def usage_ingested_totals(*, start: datetime, end: datetime, stripe_customer_id: str = "") -> dict:
    """(stripe customer id, meter key) -> quantity ingested with a timestamp in [start, end)."""
    qs = UsageEvent.objects.filter(timestamp__gte=start, timestamp__lt=end)
    if stripe_customer_id:
        qs = qs.filter(customer__stripe_customer_id=stripe_customer_id)
    out = {}
    for row in qs.order_by().values("customer__stripe_customer_id", "meter").annotate(q=Sum("quantity"), n=Count("id")):
        spec = settings.USAGE_METERS.get(row["meter"], {})
        out[(row["customer__stripe_customer_id"], row["meter"])] = Decimal(row["n"]) if spec.get(
            "formula") == "count" else row["q"]
    return out


def usage_ops_section() -> dict:
    """Ingestion and reporting lag for the ops summary: one query."""
    now = timezone.now()
    S = UsageReport.State
    event_table = connection.ops.quote_name(UsageEvent._meta.db_table)
    report_table = connection.ops.quote_name(UsageReport._meta.db_table)
    with connection.cursor() as cursor:
        cursor.execute(
            f"SELECT (SELECT MIN(received_at) FROM {event_table} WHERE id = (SELECT MIN(id) FROM {event_table} "
            f"WHERE report_id IS NULL)), "
            f"(SELECT COUNT(*) FROM {report_table} WHERE state IN (%s, %s, %s)), "
            f"(SELECT MIN(claimed_at) FROM {report_table} WHERE state IN (%s, %s, %s)), "
            f"(SELECT COUNT(*) FROM {report_table} WHERE state = %s), "
            f"(SELECT COUNT(*) FROM {report_table} WHERE state = %s AND error_code = %s), "
            f"(SELECT MAX(sent_at) FROM {report_table} WHERE state = %s)",
            [S.PENDING, S.SENDING, S.RETRY, S.PENDING, S.SENDING, S.RETRY, S.FAILED, S.FAILED,
             "meter_event_customer_not_found", S.SENT])
        oldest_unreported, pending, oldest_pending, failed, not_found, last_sent = cursor.fetchone()

    def as_dt(value):
        if isinstance(value, str):
            value = parse_datetime(value)
        if value is not None and timezone.is_naive(value):
            value = timezone.make_aware(value, dt_timezone.utc)
        return value

    oldest_unreported, oldest_pending, last_sent = as_dt(oldest_unreported), as_dt(oldest_pending), as_dt(last_sent)
    ingestion_lag = int((now - oldest_unreported).total_seconds()) if oldest_unreported else 0
    reporting_lag = int((now - oldest_pending).total_seconds()) if oldest_pending else 0
    problems = []
    if failed:
        problems.append(f"{failed} usage report(s) failed and need support"
                        + (f" ({not_found} for a customer Stripe does not know)." if not_found else "."))
    if ingestion_lag > 15 * 60:
        problems.append(f"Usage events wait {ingestion_lag // 60} minutes to be reported (is report_usage running?).")
    if reporting_lag > 60 * 60:
        problems.append(f"Usage reports wait {reporting_lag // 60} minutes to reach Stripe.")
    return {"ingestionLagSeconds": ingestion_lag, "reportingLagSeconds": reporting_lag, "reportsPending": pending,
            "reportsFailed": failed, "lastSentAt": last_sent.isoformat() if last_sent else None,
            "meters": sorted(settings.USAGE_METERS), "problems": problems}
