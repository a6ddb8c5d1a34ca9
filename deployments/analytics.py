"""Deployments' chart on the analytics page (registered from DeploymentsConfig.ready)."""
from __future__ import annotations

from datetime import timedelta

from django.db.models import Count
from django.db.models.functions import TruncDay

from billing_console.analytics.registry import Chart, Series, Window
from deployments.models import PublishVersion

OUTCOMES = [("live", "Live", 2), ("failed", "Failed", 5), ("rolled_back", "Rolled back", 4),
            ("superseded", "Superseded", 6), ("in_flight", "In flight", 1)]


def push_outcome_figures(days) -> dict[str, list[int]]:
    """Pushes per day they were created (PublishVersion.created_at), last 7 days, by status now: live,
    failed, rolled back, superseded, and in flight (queued, building or deploying). One query."""
    index = {d.date(): i for i, d in enumerate(days)}
    out = {key: [0] * len(days) for key, _, _ in OUTCOMES}
    rows = (PublishVersion.objects.filter(created_at__gte=days[0], created_at__lt=days[-1] + timedelta(days=1))
            .annotate(day=TruncDay("created_at")).values("day", "status").order_by().annotate(n=Count("id")))
    for row in rows:
        i = index.get(row["day"].date())
        if i is not None:
            key = "in_flight" if row["status"] in PublishVersion.IN_FLIGHT else row["status"]
            if key in out:
                out[key][i] += row["n"]
    return out


def analytics_charts(window: Window) -> list[Chart]:
    data = push_outcome_figures(window.days)
    total, failed = sum(sum(v) for v in data.values()), sum(data["failed"])
    return [Chart(slug="push-outcomes", section="Operations", title="Pushes to customers' Cloudflare accounts",
                  caption=f"{total:,} push(es) in the last 7 days, {failed:,} failed.",
                  labels=[d.strftime("%m-%d") for d in window.days], order=62,
                  series=[Series(label, data[key], tone=tone) for key, label, tone in OUTCOMES])]
