"""Server-side SVG for the analytics page: stacked bars (negative values below the axis) and lines.

No JavaScript and nothing from outside: the picture is markup the page embeds. Colours come from CSS
classes (`an-c1`..`an-c6`, `an-c0` = the text colour) that the page's stylesheet maps to the admin's
light and dark variables, so the same SVG reads on screen, in dark mode and in print.
"""
from __future__ import annotations

import math

from django.utils.html import escape
from django.utils.safestring import SafeString, mark_safe

from billing_console.analytics.registry import Chart

W, H = 760, 260
LEFT, RIGHT, TOP, BOTTOM = 76, 14, 14, 40


def value_text(value, chart: Chart) -> str:
    """One value as the table and tooltips show it."""
    if value is None:
        return "–"
    if chart.unit == "money":
        from billing_console.invoicing.services import money_format

        return money_format(int(value), chart.currency)
    if chart.unit == "percent":
        return f"{value:.1f} %"
    if chart.unit == "seconds":
        return f"{value:,.1f} s"
    return f"{int(value):,}"


def _axis_text(value: float, chart: Chart) -> str:
    if chart.unit == "money":
        from billing_console.invoicing.services import currency_exponent

        major = value / 10 ** currency_exponent(chart.currency)
        text = f"{major / 1000:,.1f}k" if abs(major) >= 10_000 else f"{major:,.0f}"
        return f"{text} {chart.currency.upper()}"
    if chart.unit == "percent":
        return f"{value:.0f} %"
    if chart.unit == "seconds":
        return f"{value:,.0f} s"
    return f"{value:,.0f}"


def nice_step(span: float, ticks: int = 4) -> float:
    """A round step (1, 2, 2.5 or 5 x 10^n) that divides `span` into about `ticks` parts."""
    if span <= 0:
        return 1
    raw = span / ticks
    power = 10 ** math.floor(math.log10(raw))
    for factor in (1, 2, 2.5, 5, 10):
        if factor * power >= raw:
            return factor * power
    return 10 * power


def _bounds(chart: Chart) -> tuple[float, float]:
    n = len(chart.labels)
    top, bottom = 0.0, 0.0
    pos, neg = [0.0] * n, [0.0] * n
    for s in chart.series:
        for i, v in enumerate(s.values):
            if v is None:
                continue
            if s.kind == "bar":
                if v >= 0:
                    pos[i] += v
                else:
                    neg[i] += v
            else:
                top, bottom = max(top, v), min(bottom, v)
    top = max([top, *pos]) if n else top
    bottom = min([bottom, *neg]) if n else bottom
    return bottom, top


def chart_svg(chart: Chart) -> SafeString:
    n = len(chart.labels)
    if n == 0:
        return mark_safe("")
    low, high = _bounds(chart)
    if high == low:
        high = low + 1
    step = nice_step(high - low)
    if chart.unit == "count":
        step = max(1, math.ceil(step))
    elif chart.unit == "money":
        from billing_console.invoicing.services import currency_exponent

        unit = 10 ** currency_exponent(chart.currency)  # ticks on whole major units
        step = max(unit, math.ceil(step / unit) * unit)
    high = math.ceil(high / step) * step
    low = math.floor(low / step) * step
    plot_w, plot_h = W - LEFT - RIGHT, H - TOP - BOTTOM

    def y(v: float) -> float:
        return TOP + (high - v) / (high - low) * plot_h

    slot = plot_w / n
    bar_w = max(1.0, slot * (0.62 if n <= 31 else 0.8))
    out = [f'<svg class="an-chart" viewBox="0 0 {W} {H}" role="img" aria-labelledby="{chart.slug}-title" '
           f'xmlns="http://www.w3.org/2000/svg" preserveAspectRatio="xMidYMid meet">',
           f'<title id="{chart.slug}-title">{escape(chart.title)}: {escape(chart.caption)}</title>']
    # Grid and y axis labels.
    tick = low
    while tick <= high + step / 1000:
        ty = y(tick)
        cls = "an-axis" if abs(tick) < step / 1000 else "an-grid"
        out.append(f'<line class="{cls}" x1="{LEFT}" x2="{W - RIGHT}" y1="{ty:.1f}" y2="{ty:.1f}"/>')
        out.append(f'<text class="an-tick" x="{LEFT - 6}" y="{ty + 4:.1f}" text-anchor="end">'
                   f'{escape(_axis_text(tick, chart))}</text>')
        tick += step
    # X labels: the chart's own ticks (e.g. one per day on an hourly chart), else at most about 12.
    every = max(1, math.ceil(n / 12))
    ticks = chart.ticks if chart.ticks is not None else {i: label for i, label in enumerate(chart.labels) if i % every == 0}
    for i, label in ticks.items():
        cx = LEFT + slot * (i + 0.5)
        out.append(f'<text class="an-tick" x="{cx:.1f}" y="{H - BOTTOM + 16}" text-anchor="middle">'
                   f'{escape(label)}</text>')
    # Stacked bars.
    pos, neg = [0.0] * n, [0.0] * n
    for s in chart.series:
        if s.kind != "bar":
            continue
        for i, v in enumerate(s.values):
            if not v:
                continue
            x = LEFT + slot * i + (slot - bar_w) / 2
            if v > 0:
                y0, y1 = y(pos[i] + v), y(pos[i])
                pos[i] += v
            else:
                y0, y1 = y(neg[i]), y(neg[i] + v)
                neg[i] += v
            out.append(f'<rect class="an-c{s.tone}" x="{x:.1f}" y="{y0:.1f}" width="{bar_w:.1f}" '
                       f'height="{max(0.5, y1 - y0):.1f}"><title>{escape(chart.labels[i])} {escape(s.name)}: '
                       f'{escape(value_text(v, chart))}</title></rect>')
    # Lines, drawn over the bars.
    for s in chart.series:
        if s.kind != "line":
            continue
        points = [(LEFT + slot * (i + 0.5), y(v), i, v) for i, v in enumerate(s.values) if v is not None]
        if not points:
            continue
        path = " ".join(f"{px:.1f},{py:.1f}" for px, py, _, _ in points)
        out.append(f'<polyline class="an-line an-s{s.tone}" points="{path}"/>')
        if len(points) <= 40:
            for px, py, i, v in points:
                out.append(f'<circle class="an-dot an-s{s.tone}" cx="{px:.1f}" cy="{py:.1f}" r="3">'
                           f'<title>{escape(chart.labels[i])} {escape(s.name)}: {escape(value_text(v, chart))}'
                           f'</title></circle>')
    out.append("</svg>")
    return mark_safe("".join(out))


def chart_table(chart: Chart) -> dict:
    """The numbers behind the picture: {"columns": [...], "rows": [[label, text, ...], ...]}, a row per x."""
    return {"columns": [s.name for s in chart.series],
            "rows": [[label, *[value_text(s.values[i], chart) for s in chart.series]]
                     for i, label in enumerate(chart.labels)]}
