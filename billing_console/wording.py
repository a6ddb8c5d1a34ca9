"""Plain words for states, shared by the customer pages (portal) and the support console so both say the same thing.

Entitlement comes from `billing_console.selectors.customer_entitlement` (never re-derived here);
this module only turns its reason codes into sentences.
"""
from __future__ import annotations

from dataclasses import dataclass

from django.conf import settings
from django.utils import timezone

from billing_console.selectors import Entitlement, Reason, plan_settings


@dataclass(frozen=True)
class Words:
    headline: str
    detail: str
    tone: str  # ok | warn | bad | idle


def _day(dt) -> str:
    return timezone.localtime(dt).strftime("%-d %B %Y") if dt else ""


def entitlement_words(ent: Entitlement, *, cancel_at_period_end: bool = False) -> Words:
    plan = plan_settings(ent.plan)["name"]
    end = _day(ent.current_period_end)
    grace = _day(ent.grace_ends_at)
    if ent.reason == Reason.VALID:
        if cancel_at_period_end:
            return Words(f"{plan} is active until {end}", "The subscription is set to end then; renew it from the "
                                                          "billing portal to keep access.", "warn")
        return Words(f"{plan} is active", f"Renews on {end}." if end else "Your subscription is active.", "ok")
    if ent.reason == Reason.PAST_DUE:
        return Words("Payment failed: please update your card", "Everything keeps working for now. Pay the open "
                     "invoice from the billing portal before access is limited.", "warn")
    if ent.reason == Reason.PAST_DUE_SOFT_LOCK:
        return Words("Payment overdue: access is limited", "Your apps keep working but show a reminder. "
                     "Pay the open invoice from the billing portal to lift the limit.", "warn")
    if ent.reason == Reason.HARD_LOCKED:
        return Words("Locked for non-payment", "Licences and deployment updates are stopped until the open invoice "
                     "is paid. Paying from the billing portal unlocks everything within minutes.", "bad")
    if ent.reason == Reason.CANCELED:
        return Words("Subscription ended", "Subscribe again from the pricing page to get access back.", "bad")
    if ent.reason == Reason.INCOMPLETE:
        return Words("First payment not completed", "Finish the payment in the billing portal to start.", "warn")
    if ent.reason == Reason.EXPIRED:
        return Words("Access expired", f"The paid period ended on {end}" + (f" and the offline grace on {grace}" if grace else "")
                     + ". Renew from the billing portal.", "bad")
    return Words("No subscription yet", "Choose a plan on the pricing page.", "idle")


def stripe_dashboard_urls(*, stripe_customer_id: str, subscription_id: str) -> dict[str, str]:
    """Links into Stripe's dashboard in the mode the console runs in (test or live); in sandbox mode
    (STRIPE_API_HOST set, not live) the sandbox's own read-only pages."""
    host = getattr(settings, "STRIPE_API_HOST", "")
    sandbox = bool(host) and not settings.STRIPE_LIVE_MODE
    base = (f"{host.rstrip('/')}/dashboard" if sandbox
            else "https://dashboard.stripe.com" + ("" if settings.STRIPE_LIVE_MODE else "/test"))
    urls = {}
    if stripe_customer_id:
        urls["customer"] = f"{base}/customers/{stripe_customer_id}"
        urls["invoices"] = (f"{base}/customers/{stripe_customer_id}#invoices" if sandbox
                            else f"{base}/invoices?customer={stripe_customer_id}")
    if subscription_id:
        urls["subscription"] = f"{base}/subscriptions/{subscription_id}"
    return urls


def counted(count: int, singular: str, plural: str = "") -> str:
    """"1 deployment", "2 deployments"."""
    return f"{count:,} {singular if count == 1 else (plural or singular + 's')}"
