"""Usage as everyone reads it: this period's usage and its estimate at the plan's tiers (manage page,
admin), the tiers of an invoice line (PDF), the ingestion and reporting lag (ops summary), and the
comparison of the totals sent with Stripe's meter summaries (reconciliation)."""
from __future__ import annotations

import calendar
import hashlib
from datetime import datetime, timezone as dt_timezone
from decimal import ROUND_HALF_UP, Decimal, InvalidOperation

from django.conf import settings
from django.core.cache import cache
from django.db import connection
from django.db.models import Count, Max, Q, Sum
from django.utils import timezone
from django.utils.dateparse import parse_datetime

from billing_console.wording import counted
from billing_console.models import Customer, DriftItem, UsageEvent, UsageReport
from billing_console.stripe import gateway as stripe_gateway


def month_back(moment: datetime) -> datetime:
    """Stripe's monthly anchor one month earlier (the day clamped to the month's length)."""
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
    Read from the reports (one row per window, what Stripe is sent) plus the events not yet claimed into
    one: two queries whatever the number of events."""
    start, end = customer_usage_period(customer, now=now)
    S = UsageReport.State
    in_period = Q(event_timestamp__gte=start, event_timestamp__lt=end)
    # Reports of this period and the previous one: a failure there still changes an invoice.
    reports = {row["meter"]: row for row in UsageReport.objects.filter(
        customer=customer, event_timestamp__gte=month_back(start), event_timestamp__lt=end).order_by().values(
        "meter").annotate(quantity=Sum("quantity", filter=in_period), events=Sum("event_count", filter=in_period),
                          pending=Count("id", filter=Q(state__in=[S.PENDING, S.SENDING, S.RETRY])),
                          failed=Count("id", filter=Q(state=S.FAILED)), last_sent=Max("sent_at"))}
    unreported = {row["meter"]: row for row in UsageEvent.objects.filter(
        customer=customer, report__isnull=True, timestamp__gte=start, timestamp__lt=end).order_by().values(
        "meter").annotate(quantity=Sum("quantity"), events=Count("id"))}
    price_id, priced_meter = plan_usage_price(customer)
    meters = []
    for key, spec in settings.USAGE_METERS.items():
        report, waiting = reports.get(key, {}), unreported.get(key, {})
        waiting_qty = Decimal(waiting.get("events") or 0) if spec["formula"] == "count" else (
            waiting.get("quantity") or Decimal(0))
        quantity = Decimal(report.get("quantity") or 0) + waiting_qty
        row = {"key": key, "name": spec["display_name"], "quantity": quantity,
               "quantity_text": f"{quantity.normalize():f}",
               "events": (report.get("events") or 0) + (waiting.get("events") or 0),
               "unreported_events": waiting.get("events") or 0,
               "reports_pending": report.get("pending") or 0, "reports_failed": report.get("failed") or 0,
               "last_sent_at": report.get("last_sent"), "estimate": None, "currency": "", "tiers": []}
        if key == priced_meter and price_id:
            priced = price_tiers(price_id)
            if priced:
                amount, rows = tiered_breakdown(priced["tiers"], priced["tiers_mode"], quantity)
                row.update(estimate=amount, currency=priced["currency"], tiers=rows, tiers_mode=priced["tiers_mode"])
        meters.append(row)
    return {"period_start": start, "period_end": end, "meters": meters}


def _minute(moment: datetime) -> int:
    return int(moment.timestamp()) // 60 * 60


def usage_compare(add, meter_usage, *, customer_pk: int | None, customers_by_pk: dict, now: datetime) -> int:
    """Per customer with reported usage, per meter, for the current and the previous billing period:
    the quantities the console recorded as sent against the sum of Stripe's meter event summaries over
    the same minute-aligned bounds. One query and one Stripe read per customer, meter and period."""
    reporting = UsageReport.objects.values_list("customer_id", flat=True).distinct().order_by()
    if customer_pk:
        reporting = reporting.filter(customer_id=customer_pk)
    checked = 0
    for pk in reporting:
        customer = customers_by_pk.get(pk)
        if customer is None or not customer.stripe_customer_id:
            continue
        start, end = customer_usage_period(customer, now=now)
        periods = [(_minute(month_back(start)), _minute(start)), (_minute(start), _minute(end))]
        sums = {}
        rows = UsageReport.objects.filter(customer_id=pk, state=UsageReport.State.SENT,
                                          event_timestamp__gte=datetime.fromtimestamp(periods[0][0], tz=dt_timezone.utc),
                                          event_timestamp__lt=datetime.fromtimestamp(periods[1][1], tz=dt_timezone.utc))
        for meter, ts, quantity in rows.order_by().values_list("meter", "event_timestamp", "quantity"):
            moment = int(ts.timestamp())
            for index, (p_start, p_end) in enumerate(periods):
                if p_start <= moment < p_end:
                    sums[(meter, index)] = sums.get((meter, index), Decimal(0)) + quantity
        for meter in settings.USAGE_METERS:
            for index, (p_start, p_end) in enumerate(periods):
                console = sums.get((meter, index), Decimal(0))
                stripe = meter_usage(meter=meter, customer=customer.stripe_customer_id, start=p_start, end=p_end)
                if stripe is None:
                    continue
                checked += 1
                if Decimal(stripe) != console:
                    period = datetime.fromtimestamp(p_start, tz=dt_timezone.utc).strftime("%Y-%m-%d %H:%M")
                    add(DriftItem.Kind.USAGE_TOTAL, customer=customer,
                        stripe_id=f"{customer.stripe_customer_id} {meter} from {period}",
                        expected=f"{Decimal(stripe).normalize():f}", actual=f"{console.normalize():f}")
    return checked


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
        problems.append(f"{counted(failed, 'usage report')} failed and need support"
                        + (f" ({not_found} for a customer Stripe does not know)." if not_found else "."))
    if ingestion_lag > 15 * 60:
        problems.append(f"Usage events wait {ingestion_lag // 60} minutes to be reported (is report_usage running?).")
    if reporting_lag > 60 * 60:
        problems.append(f"Usage reports wait {reporting_lag // 60} minutes to reach Stripe.")
    return {"ingestionLagSeconds": ingestion_lag, "reportingLagSeconds": reporting_lag, "reportsPending": pending,
            "reportsFailed": failed, "lastSentAt": last_sent.isoformat() if last_sent else None,
            "meters": sorted(settings.USAGE_METERS), "problems": problems}
