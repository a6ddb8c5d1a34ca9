"""Support console views that live beside the ModelAdmins: the global search.

Mounted under /admin/ (billing_console/urls.py) and wrapped in `admin.site.admin_view`, so they need a
staff login like every admin page.
"""
from __future__ import annotations

from django.contrib import admin
from django.core.exceptions import PermissionDenied
from django.shortcuts import redirect
from django.template.response import TemplateResponse
from django.urls import reverse

from billing_console.models import Customer
from billing_console.search import MIN_TERM, search


def search_view(request):
    if not request.user.has_perm("billing_console.view_customer"):
        raise PermissionDenied
    term, hits = search(request.GET.get("q", ""))
    by_customer: dict[int, list] = {}
    orphans = []
    for hit in hits:
        if hit.customer_id is None:
            orphans.append(hit)
        else:
            by_customer.setdefault(hit.customer_id, []).append(hit)
    customers = Customer.objects.in_bulk(list(by_customer))
    rows = [{"customer": customers[pk], "hits": found, "url": reverse("admin:billing_console_customer_change", args=[pk])}
            for pk, found in by_customer.items() if pk in customers]
    if len(rows) == 1 and not orphans and request.GET.get("all") != "1":
        return redirect(rows[0]["url"])  # one customer: straight to their page
    context = {**admin.site.each_context(request), "title": "Find a customer", "term": term, "rows": rows,
               "orphans": orphans, "too_short": 0 < len(term) < MIN_TERM, "min_term": MIN_TERM,
               "console_search_term": term}
    return TemplateResponse(request, "admin/search.html", context)
