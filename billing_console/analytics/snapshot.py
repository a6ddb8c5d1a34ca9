"""The snapshots the analytics page reads: monthly figures recomputed daily from the invoices, hourly
operations figures recomputed every hour over the last 7 days.

Why a snapshot and not live aggregates: MRR comes from the lines inside each invoice's Stripe object
(JSON), so a month's MRR needs every line of every invoice that could cover it, parsed and walked
per customer. That is seconds of work at a million invoices, and the page must answer in well under
half a second. Past months barely change, so a daily run (schedule `analytics_snapshot`) recomputes
the window from the invoices and replaces its rows in one transaction; `manage.py analytics_snapshot
--months N` back-fills any length of history the same way. The operations charts (last 7 days) are
recomputed every hour (schedule `analytics_hourly`) for the same reason: a week of Stripe events at
100,000 customers is a six-figure row count to group on every page view. The page itself only reads
the stored rows: two small queries whatever the size.
"""
from __future__ import annotations

import logging
from collections import defaultdict
from datetime import datetime

from django.db import transaction
from django.utils import timezone

from billing_console.analytics.mrr import (Ending, InvoiceRow, INVOLUNTARY_REASONS, build_history,
                                           instants, month_starts)
from billing_console.analytics.registry import Window, hourly_sources, monthly_sources
from billing_console.analytics.selectors import (checkout_funnel_figures, mrr_figures, stripe_event_figures,
                                                 subscriber_figures)

log = logging.getLogger("billing_console.analytics")


def _plan_for_price():
    from billing_console.selectors import plan_for_price

    cache: dict[str, str] = {}

    def plan(price_id: str) -> str:
        if price_id not in cache:
            cache[price_id] = plan_for_price(price_id) or price_id or "unknown"
        return cache[price_id]
    return plan


def subscription_endings() -> dict[str, Ending]:
    """When each subscription ended and whether failed payments ended it, from the stored
    customer.subscription.deleted events (Stripe's own ended_at and cancellation_details.reason)."""
    from billing_console.models import WebhookEvent

    out: dict[str, Ending] = {}
    rows = (WebhookEvent.objects.filter(type="customer.subscription.deleted")
            .values_list("object_id", "stripe_created", "payload__data__object__ended_at",
                         "payload__data__object__cancellation_details__reason"))
    for sub, created, ended_at, reason in rows.iterator(chunk_size=2000):
        at = int(ended_at) if isinstance(ended_at, int) and not isinstance(ended_at, bool) else int(created.timestamp())
        if sub and (sub not in out or at < out[sub].at):
            out[sub] = Ending(at=at, involuntary=reason in INVOLUNTARY_REASONS)
    return out


def customer_histories(*, endings: dict[str, Ending] | None = None):
    """Yield one CustomerHistory per (customer, currency), streaming the invoices grouped by customer."""
    from billing_console.models import Customer, Invoice
    from billing_console.stripe.statuses import ENDED as ENDED_STATUSES

    endings = subscription_endings() if endings is None else endings
    ended = set(Customer.objects.filter(subscription_status__in=ENDED_STATUSES).exclude(subscription_id="")
                .values_list("subscription_id", flat=True))
    plan = _plan_for_price()
    rows = (Invoice.objects.order_by("customer_id", "stripe_customer_id", "stripe_created", "pk")
            .values_list("customer_id", "stripe_customer_id", "currency", "subscription_id", "status",
                         "stripe_created", "data__lines__data"))
    key, group = None, []

    def flush():
        by_currency: dict[str, list[InvoiceRow]] = {}
        for row in group:
            by_currency.setdefault(row.currency, []).append(row)
        for currency, invoices in by_currency.items():
            subs = {i.subscription_id for i in invoices}
            yield build_history(key, currency, invoices, plan_for_price=plan, ended_subscriptions=ended & subs,
                                endings={s: e for s, e in endings.items() if s in subs})

    for customer_id, stripe_customer, currency, sub, status, created, lines in rows.iterator(chunk_size=2000):
        row_key = str(customer_id) if customer_id is not None else f"stripe:{stripe_customer}"
        if row_key != key:
            if group:
                yield from flush()
            key, group = row_key, []
        group.append(InvoiceRow(customer_key=row_key, currency=(currency or "").lower(), subscription_id=sub or "",
                                status=status or "", created=int(created.timestamp()) if created else 0,
                                lines=lines if isinstance(lines, list) else []))
    if group:
        yield from flush()


def analytics_figures_compute(*, months: int, now: datetime | None = None) -> tuple[list[datetime], dict]:
    """Every monthly figure of the last `months` months (current one last), without writing anything."""
    now = now or timezone.now()
    window = month_starts(now, months + 1)  # one more: the baseline month before the window
    ends = instants(window, now)
    # One pass over the customers, one history in memory at a time.
    money, subscribers = defaultdict(lambda: [0] * months), defaultdict(lambda: [0] * months)
    for history in customer_histories():
        mrr_figures((history,), ends, out=money)
        subscriber_figures((history,), ends, out=subscribers)
    figures = {**money, **subscribers, **checkout_funnel_figures(window[1:], now)}
    for source in monthly_sources():  # the apps' figures (dunning recovery, ...)
        figures.update(source(window[1:], now))
    return window[1:], figures


def analytics_snapshot_build(*, months: int = 12, now: datetime | None = None) -> dict:
    """Recompute the last `months` months and replace their stored rows (one transaction). Returns counts."""
    from billing_console.analytics.models import MonthlyFigure

    now = now or timezone.now()
    window, figures = analytics_figures_compute(months=months, now=now)
    rows = [MonthlyFigure(month=window[i].date(), figure=figure, dimension=dimension, value=int(value),
                          computed_at=now)
            for (figure, dimension), values in figures.items() for i, value in enumerate(values) if value]
    with transaction.atomic():
        MonthlyFigure.objects.filter(month__in=[m.date() for m in window]).delete()
        MonthlyFigure.objects.bulk_create(rows, batch_size=2000)
        # An empty marker per month records when it was computed, even for a month with no figures.
        MonthlyFigure.objects.bulk_create([MonthlyFigure(month=m.date(), figure="computed", dimension="", value=0,
                                                         computed_at=now) for m in window], batch_size=2000)
    log.info("analytics snapshot: %d months, %d figures", len(window), len(rows),
             extra={"event": "analytics_snapshot_built", "months": len(window), "rows": len(rows)})
    return {"months": len(window), "rows": len(rows)}


def analytics_hourly_build(*, now: datetime | None = None) -> dict:
    """Recompute the hourly figures of the last 7 days (the running hour so far) and replace every stored
    hourly row in one transaction. Returns counts."""
    from billing_console.analytics.models import HourlyFigure

    now = now or timezone.now()
    hours = Window(now=now).hours
    figures = dict(stripe_event_figures(hours, now))
    for source in hourly_sources():  # the apps' figures (push outcomes, ...)
        figures.update(source(hours, now))
    rows = [HourlyFigure(hour=hours[i], figure=figure, dimension=dimension, value=int(value), computed_at=now)
            for (figure, dimension), values in figures.items() for i, value in enumerate(values) if value]
    rows.append(HourlyFigure(hour=hours[-1], figure="computed", dimension="", value=0, computed_at=now))
    with transaction.atomic():
        HourlyFigure.objects.all().delete()  # only the window is kept
        HourlyFigure.objects.bulk_create(rows, batch_size=2000)
    return {"hours": len(hours), "rows": len(rows) - 1}


def analytics_hourly_cron() -> None:
    """django-q2 entry point (schedule `analytics_hourly`)."""
    from billing_console.services import cron_guard

    with cron_guard("analytics_hourly") as run:
        if run is not None:
            run.counts = analytics_hourly_build()


def analytics_snapshot_cron() -> None:
    """django-q2 entry point (schedule `analytics_snapshot`)."""
    from billing_console.services import cron_guard

    with cron_guard("analytics_snapshot") as run:
        if run is not None:
            run.counts = analytics_snapshot_build()
