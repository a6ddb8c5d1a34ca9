"""Support console views that live beside the ModelAdmins: the global search, and every app's admin
actions run from the customer page.

Mounted under /admin/ (billing_console/urls.py) and wrapped in `admin.site.admin_view`, so they need a
staff login like every admin page.
"""
from __future__ import annotations

from django.apps import apps
from django.contrib import admin, messages
from django.contrib.admin.helpers import ACTION_CHECKBOX_NAME
from django.core.exceptions import PermissionDenied
from django.http import Http404, HttpResponseNotAllowed
from django.shortcuts import redirect
from django.template.response import TemplateResponse
from django.urls import reverse

from billing_console.admin.search import MIN_TERM, search
from billing_console.models import Customer


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


# --- Every app's admin actions on the customer page ----------------------------------------------------
ROWS_PER_MODEL = 5


def customer_path(model) -> str | None:
    """The ORM path from `model` to its Customer (one or two foreign keys), or None."""
    if model is Customer:
        return "pk"
    fks = [f for f in model._meta.get_fields() if f.many_to_one and f.concrete and f.related_model is not None]
    for f in fks:
        if f.related_model is Customer:
            return f.name
    for f in fks:
        for g in f.related_model._meta.get_fields():
            if g.many_to_one and g.concrete and g.related_model is Customer:
                return f"{f.name}__{g.name}"
    return None


def _action_models():
    """The models on the customer page (the inlines apps registered) and their child rows (devices of a
    licence, publishes of a deployment), in the admin's registry."""
    from billing_console.admin.customers import CustomerAdmin

    shown = [inline.model for inline in CustomerAdmin.inlines]
    models = list(shown)
    for model in admin.site._registry:
        if model not in models and any(f.many_to_one and f.related_model in shown for f in model._meta.get_fields()):
            models.append(model)
    return [m for m in models if m in admin.site._registry and customer_path(m)]


def _actions_for(request, model_admin) -> list[tuple[str, str]]:
    actions = model_admin.get_actions(request)  # already filtered by the user's permissions
    return [(name, str(description)) for name, (_, _, description) in actions.items() if name != "delete_selected"]


def customer_action_rows(request, customer: Customer) -> list[dict]:
    """[{label, url, rows: [(obj, change_url)], actions: [(name, description)]}] -- one query per model."""
    sections = []
    for model in _action_models():
        model_admin = admin.site._registry[model]
        actions = _actions_for(request, model_admin)
        if not actions:
            continue
        rows = list(model_admin.get_queryset(request).filter(**{customer_path(model): customer.pk})
                    .order_by("-pk")[:ROWS_PER_MODEL])
        if not rows:
            continue
        sections.append({"label": str(model._meta.verbose_name).capitalize(), "actions": actions, "rows": rows,
                         "model": model._meta.label_lower,
                         "url": reverse("console-customer-action", args=[customer.pk, model._meta.app_label,
                                                                         model._meta.model_name])})
    return sections


def customer_action_view(request, customer_id: int, app_label: str, model_name: str):
    """Run one admin action of any app on this customer's rows, then come back to the customer page.
    An action that answers with a page of its own (a confirmation form) posts back here."""
    if request.method != "POST":
        return HttpResponseNotAllowed(["POST"])
    customer = Customer.objects.filter(pk=customer_id).first()
    try:
        model = apps.get_model(app_label, model_name)
    except LookupError:
        model = None
    model_admin = admin.site._registry.get(model)
    path = customer_path(model) if model is not None else None
    if customer is None or model_admin is None or path is None:
        raise Http404
    back = reverse("admin:billing_console_customer_change", args=[customer.pk])
    name = request.POST.get("action", "")
    actions = model_admin.get_actions(request)
    if name not in actions or name == "delete_selected":
        messages.error(request, "That action is not available to you here.")
        return redirect(back)
    queryset = model_admin.get_queryset(request).filter(pk__in=request.POST.getlist(ACTION_CHECKBOX_NAME),
                                                        **{path: customer.pk})
    if not queryset.exists():
        messages.warning(request, "Nothing selected (or it does not belong to this customer).")
        return redirect(back)
    response = actions[name][0](model_admin, request, queryset)
    return response if response is not None else redirect(back)
