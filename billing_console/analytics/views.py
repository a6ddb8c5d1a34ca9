"""The analytics page and its CSV exports, under /admin/ (staff login through admin_view).

Who sees it: superusers and staff with `analytics.view_analytics` (the support group has it). Any other
staff user gets a 403 page that says only that.
"""
from __future__ import annotations

from django.contrib import admin
from django.http import Http404, HttpResponse
from django.template.response import TemplateResponse
from django.utils import timezone

from billing_console.analytics.charts import chart_svg, chart_table
from billing_console.analytics.csv import chart_csv
from billing_console.analytics.registry import Window, analytics_charts

PERMISSION = "analytics.view_analytics"


def _forbidden(request):
    context = {**admin.site.each_context(request), "title": "Analytics", "forbidden": True}
    return TemplateResponse(request, "admin/analytics/index.html", context, status=403)


def analytics_view(request):
    if not request.user.has_perm(PERMISSION):
        return _forbidden(request)
    window = Window(now=timezone.now())
    charts = analytics_charts(window)
    sections: dict[str, list] = {}
    for chart in charts:
        sections.setdefault(chart.section, []).append(
            {"chart": chart, "svg": "" if chart.omitted else chart_svg(chart),
             "table": None if chart.omitted else chart_table(chart)})
    context = {**admin.site.each_context(request), "title": "Analytics", "sections": sections,
               "computed_at": window.figures.get(("computed_at", "")), "months": window.month_labels,
               "hourly_at": window.hourly.get(("computed_at", ""))}
    return TemplateResponse(request, "admin/analytics/index.html", context)


def analytics_csv_view(request, slug: str):
    if not request.user.has_perm(PERMISSION):
        return _forbidden(request)
    chart = next((c for c in analytics_charts(Window(now=timezone.now())) if c.slug == slug and not c.omitted), None)
    if chart is None:
        raise Http404("No such chart.")
    response = HttpResponse(chart_csv(chart), content_type="text/csv; charset=utf-8")
    response["Content-Disposition"] = f'attachment; filename="analytics-{slug}.csv"'
    return response
