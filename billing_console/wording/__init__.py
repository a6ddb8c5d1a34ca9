"""Plain words shared by the customer pages (portal) and the support console so both say the same thing.

What a customer is told about their subscription in each state is decided by one function,
`billing_console.wording.subscription.subscription_copy` (re-exported here); money is formatted by
`billing_console.wording.money.money_format`.
"""
from __future__ import annotations

from django.conf import settings

from billing_console.wording.money import money_format  # noqa: F401  (one place to import the shared wording from)
from billing_console.wording.subscription import SubscriptionCopy, subscription_copy  # noqa: F401


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


def device_limit_words(active: int, max_devices: int) -> str:
    """What a licence with more active devices than its limit says (after a plan or quantity downgrade), ""
    within it. Those devices keep working; a new one is refused until fewer than the limit are active."""
    if active <= max_devices:
        return ""
    verbs = "is active and keeps" if active == 1 else "are active and keep"
    return (f"Your plan now allows {counted(max_devices, 'device')}. {counted(active, 'device')} {verbs} working; "
            f"deactivate {active - max_devices + 1} to activate a new one.")
