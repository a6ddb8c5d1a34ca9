"""Template tags of the support console: the front page dashboard and the customer page's summary."""
from __future__ import annotations

from django import template
from django.conf import settings

from billing_console.admin.customers import entitlement_in_words
from billing_console.admin.dashboard import dashboard_sections
from billing_console.models import Customer
from billing_console.selectors import customer_entitlement, plan_settings
from billing_console.wording import entitlement_words, stripe_dashboard_urls

register = template.Library()


@register.simple_tag(takes_context=True)
def console_dashboard(context):
    return dashboard_sections(context["request"])


@register.simple_tag
def customer_summary(customer: Customer | None) -> dict | None:
    """The cards at the top of the customer page: no query (the customer is already loaded)."""
    if customer is None or customer.pk is None:
        return None
    ent = customer_entitlement(customer)
    return {
        "entitlement": ent,
        "words": entitlement_words(ent, cancel_at_period_end=customer.cancel_at_period_end),
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
