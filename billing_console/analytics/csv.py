"""CSV export of one chart's table: one row per x value, one column per series, raw numbers (money in
major units with the currency in the header, so a spreadsheet sums it right)."""
from __future__ import annotations

import csv
import io

from billing_console.analytics.registry import Chart

_FORMULA = ("=", "+", "-", "@", "\t", "\r")


def _cell(value) -> str:
    text = "" if value is None else str(value)
    # A label a spreadsheet would run as a formula is quoted; numbers (also negative ones) are left alone.
    if text.startswith(_FORMULA):
        try:
            float(text)
        except ValueError:
            return "'" + text
    return text


def _number(value, chart: Chart) -> str:
    if value is None:
        return ""
    if chart.unit == "money":
        from billing_console.invoicing.services import currency_exponent

        exp = currency_exponent(chart.currency)
        if exp == 0:
            return str(int(value))
        sign = "-" if value < 0 else ""
        major, minor = divmod(abs(int(value)), 10 ** exp)
        return f"{sign}{major}.{minor:0{exp}d}"
    return str(value)


def chart_csv(chart: Chart) -> str:
    unit = {"money": f" ({chart.currency.upper()})", "percent": " (%)", "seconds": " (s)"}.get(chart.unit, "")
    buffer = io.StringIO()
    writer = csv.writer(buffer)
    writer.writerow(["period", *[_cell(s.name + unit) for s in chart.series]])
    for i, label in enumerate(chart.labels):
        writer.writerow([_cell(label), *[_number(s.values[i], chart) for s in chart.series]])
    return buffer.getvalue()
