"""What the analytics page shows: figures and charts contributed by the core and by apps, without the core
importing the apps. From its AppConfig.ready() an app calls:

- `register_monthly_figures(fn)`: fn(months, now) -> {(figure, dimension): [value per month]}, run by the
  daily snapshot and stored (the page never runs it);
- `register_hourly_figures(fn)`: fn(hours, now) -> {(figure, dimension): [value per hour]}, run by the
  hourly snapshot over the last 7 days and stored;
- `register_analytics_section(fn)`: fn(window) -> [Chart], drawn from `window.figures` / `window.hourly`
  (the stored rows, read once per page), so the page costs the same few queries at any size.
"""
from __future__ import annotations

import logging
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from functools import cached_property
from typing import Callable

log = logging.getLogger("billing_console")

MONTHS = 12
OPS_DAYS = 7


@dataclass
class Series:
    name: str
    values: list
    kind: str = "bar"  # "bar" (stacked with the other bars) or "line"
    tone: int = 1  # colour slot 1..6 of the page's palette; 0 = the text colour (totals)


@dataclass
class Chart:
    slug: str  # unique on the page; the CSV's name
    section: str
    title: str
    caption: str  # one plain sentence: what the picture says
    labels: list[str]  # the x axis (months, days or hours)
    series: list[Series]
    unit: str = "count"  # count | money | seconds | percent
    currency: str = ""
    note: str = ""  # where the figure differs from Stripe / Baremetrics, or why it is empty
    order: int = 100
    omitted: str = ""  # set when the chart cannot be drawn honestly: the page says why instead
    ticks: dict[int, str] | None = None  # x labels to draw {index: text}; None = spaced automatically

    @property
    def has_data(self) -> bool:
        return any(v for s in self.series for v in s.values if v)


@dataclass
class Window:
    """The period every chart covers: MONTHS calendar months (current one last) and the last OPS_DAYS days."""
    now: datetime

    @cached_property
    def months(self) -> list[datetime]:
        from billing_console.analytics.mrr import month_starts

        return month_starts(self.now, MONTHS)

    @cached_property
    def month_labels(self) -> list[str]:
        return [m.strftime("%Y-%m") for m in self.months]

    @cached_property
    def hour_labels(self) -> list[str]:
        return [h.strftime("%Y-%m-%d %H:00") for h in self.hours]

    @cached_property
    def hour_ticks(self) -> dict[int, str]:
        """One x label per day on an hourly chart, at midnight."""
        return {i: h.strftime("%m-%d") for i, h in enumerate(self.hours) if h.hour == 0}

    @cached_property
    def days(self) -> list[datetime]:
        today = self.now.replace(hour=0, minute=0, second=0, microsecond=0)
        return [today - timedelta(days=OPS_DAYS - 1 - i) for i in range(OPS_DAYS)]

    @cached_property
    def hours(self) -> list[datetime]:
        top = self.now.replace(minute=0, second=0, microsecond=0)
        return [top - timedelta(hours=OPS_DAYS * 24 - 1 - i) for i in range(OPS_DAYS * 24)]

    @cached_property
    def figures(self):
        """Every stored monthly figure of the window, read once per page."""
        from billing_console.analytics.selectors import monthly_figures

        return monthly_figures(self.months)

    @cached_property
    def hourly(self):
        """Every stored hourly figure of the last OPS_DAYS days, read once per page."""
        from billing_console.analytics.selectors import hourly_figures

        return hourly_figures(self.hours)


Provider = Callable[[Window], "list[Chart]"]
FigureSource = Callable[[list, datetime], dict]
_providers: list[Provider] = []
_monthly: list[FigureSource] = []
_hourly: list[FigureSource] = []


def register_monthly_figures(fn: FigureSource) -> FigureSource:
    if fn not in _monthly:
        _monthly.append(fn)
    return fn


def register_hourly_figures(fn: FigureSource) -> FigureSource:
    if fn not in _hourly:
        _hourly.append(fn)
    return fn


def monthly_sources() -> list[FigureSource]:
    return list(_monthly)


def hourly_sources() -> list[FigureSource]:
    return list(_hourly)


def register_analytics_section(fn: Provider) -> Provider:
    if fn not in _providers:
        _providers.append(fn)
    return fn


def analytics_charts(window: Window) -> list[Chart]:
    charts: list[Chart] = []
    for provider in _providers:
        try:
            charts.extend(provider(window) or [])
        except Exception:  # one broken provider must not take the page down
            name = getattr(provider, "__name__", "provider")
            log.exception("analytics provider %s failed", name)
            charts.append(Chart(slug=f"error-{name}", section="Errors", title=name, caption="", labels=[],
                                series=[], order=999, omitted="This chart could not be read; see the server log."))
    return sorted(charts, key=lambda c: c.order)
