"""Template tags of the support console: the front page dashboard and the customer page's summary."""
from __future__ import annotations

from django import template
from django.conf import settings

from billing_console.admin.customers import entitlement_in_words
from billing_console.admin.dashboard import dashboard_sections
from billing_console.models import Customer, Invoice
from billing_console.selectors import customer_entitlement, plan_settings
from billing_console.wording.subscription import customer_paid_until, subscription_copy
from billing_console.wording import stripe_dashboard_urls

register = template.Library()
PAID_WINDOW = 24  # recent invoices read for what is owed and the last paid period


@register.simple_tag(takes_context=True)
def console_dashboard(context):
    return dashboard_sections(context["request"])


@register.simple_tag
def customer_summary(customer: Customer | None) -> dict | None:
    """The cards at the top of the customer page: one query (the customer's recent invoices), whatever their number."""
    if customer is None or customer.pk is None:
        return None
    ent = customer_entitlement(customer)
    invoices = list(Invoice.objects.filter(customer=customer).order_by("-stripe_created")[:PAID_WINDOW])
    copy = subscription_copy(customer, invoices=invoices, ent=ent)
    return {
        "entitlement": ent,
        "words": copy,
        "copy": copy,
        "paid_until": customer_paid_until(customer, invoices),
        "plan": plan_settings(customer.plan),
        "stripe": stripe_dashboard_urls(stripe_customer_id=customer.stripe_customer_id or "",
                                        subscription_id=customer.subscription_id),
        "mode": ("live" if settings.STRIPE_LIVE_MODE else "sandbox" if getattr(settings, "STRIPE_API_HOST", "")
                 else "test"),
        "reason_words": entitlement_in_words(ent),
    }


@register.simple_tag
def site_name() -> str:
    return settings.SITE_NAME


@register.simple_tag(takes_context=True)
def customer_actions(context, customer: Customer | None) -> list[dict]:
    """Every app's admin actions on this customer's rows (see billing_console.admin.console.customer_action_rows)."""
    from billing_console.admin.console import customer_action_rows

    if customer is None or customer.pk is None:
        return []
    return customer_action_rows(context["request"], customer)
