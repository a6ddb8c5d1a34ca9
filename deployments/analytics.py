"""Deployments' figures and chart on the analytics page (registered from DeploymentsConfig.ready)."""
from __future__ import annotations

from django.db.models import Count
from django.db.models.functions import TruncHour

from billing_console.analytics.registry import Chart, Series, Window
from deployments.models import PublishVersion

OUTCOMES = [("live", "Live", 2), ("failed", "Failed", 5), ("rolled_back", "Rolled back", 4),
            ("superseded", "Superseded", 6), ("in_flight", "In flight", 1)]


def push_outcome_figures(hours, now=None) -> dict[tuple[str, str], list[int]]:
    """Pushes per hour they were created (PublishVersion.created_at), by status now, one query. Stored by the
    hourly snapshot: `push_live`, `push_failed`, `push_rolled_back`, `push_superseded`, and `push_in_flight`
    (queued, building or deploying)."""
    index = {h: i for i, h in enumerate(hours)}
    out = {(f"push_{key}", ""): [0] * len(hours) for key, _, _ in OUTCOMES}
    rows = (PublishVersion.objects.filter(created_at__gte=hours[0]).annotate(hour=TruncHour("created_at"))
            .values("hour", "status").order_by().annotate(n=Count("id")))
    for row in rows:
        i = index.get(row["hour"])
        key = ("push_in_flight", "") if row["status"] in PublishVersion.IN_FLIGHT else (f"push_{row['status']}", "")
        if i is not None and key in out:
            out[key][i] += row["n"]
    return out


def analytics_charts(window: Window) -> list[Chart]:
    hours, h = window.hours, window.hourly
    days = window.days
    day_index = {d.date(): i for i, d in enumerate(days)}
    per_day = {key: [0] * len(days) for key, _, _ in OUTCOMES}
    for key, _, _ in OUTCOMES:
        for i, value in enumerate(h.get((f"push_{key}", ""), [])):
            d = day_index.get(hours[i].date())
            if d is not None:
                per_day[key][d] += value
    total, failed = sum(sum(v) for v in per_day.values()), sum(per_day["failed"])
    return [Chart(slug="push-outcomes", section="Operations", title="Pushes to customers' Cloudflare accounts",
                  caption=f"{total:,} push(es) in the last 7 days, {failed:,} failed.",
                  labels=[d.strftime("%m-%d") for d in days], order=62,
                  series=[Series(label, per_day[key], tone=tone) for key, label, tone in OUTCOMES],
                  note="By day the push was created, with the status it has now.")]
