"""Licensing's entry on the analytics page (registered from LicensingConfig.ready)."""
from __future__ import annotations

from billing_console.analytics.registry import Chart, Window


def analytics_charts(window: Window) -> list[Chart]:
    return [Chart(slug="licence-api", section="Operations", title="Licence API calls by status", caption="",
                  labels=[], series=[], order=63,
                  omitted="Not recorded: the console keeps no row per licence API call, and writing one per call "
                          "would slow the busiest read path (licence status).")]
