"""What the customer pages show, read in a fixed number of queries. Entitlement, readiness and error
codes come from their owners' selectors; this module only gathers them for one customer."""
from __future__ import annotations

from django.conf import settings
from django.db.models import Prefetch

from billing_console.models import Customer, Invoice
from billing_console.portal.wording import deployment_error_words
from billing_console.selectors import Reason, customer_entitlement, plan_settings
from billing_console.wording import entitlement_words

RECENT_INVOICES = 5
RECENT_DEVICES = 50
PAYMENT_MISSING = {Reason.PAST_DUE, Reason.PAST_DUE_SOFT_LOCK, Reason.HARD_LOCKED, Reason.INCOMPLETE}


def _prices() -> dict[str, tuple[int, str, str]]:
    """price id -> (unit amount, currency, interval) from dj-stripe's mirror, when it has the prices."""
    ids = [p["price_id"] for p in settings.PLANS.values() if p["price_id"]]
    if not ids:
        return {}
    try:
        from djstripe.models import Price

        rows = Price.objects.filter(id__in=ids).values_list("id", "unit_amount", "currency", "recurring")
        return {pid: (amount, currency, (recurring or {}).get("interval", "month")) for pid, amount, currency, recurring in rows
                if amount is not None}
    except Exception:  # the mirror is optional: the page still sells without the amounts
        return {}


def money(amount: int, currency: str) -> str:
    """Minor units to a display string (two-decimal currencies; zero-decimal ones have no cents)."""
    currency = (currency or "").upper()
    if currency in {"JPY", "KRW", "VND", "CLP", "ISK", "UGX", "XOF", "XAF"}:
        return f"{amount:,} {currency}"
    return f"{amount // 100:,}.{amount % 100:02d} {currency}"


def pricing_plans() -> list[dict]:
    prices = _prices()
    plans = []
    for code, plan in settings.PLANS.items():
        price = prices.get(plan["price_id"])
        plans.append({
            "code": code,
            "name": plan["name"],
            "available": bool(plan["price_id"]),
            "price": money(price[0], price[1]) if price else "",
            "interval": price[2] if price else "",
            "features": [
                f"Up to {plan['max_devices']} device{'s' if plan['max_devices'] != 1 else ''}",
                f"Works offline for {plan['offline_grace_days']} days",
                *(["Managed deployment to your own Cloudflare account"] if plan.get("managed_deployment") else []),
                "Cancel any time from the billing portal",
            ],
        })
    return plans


def _licences(customer: Customer) -> list[dict]:
    from licensing.models import DeviceActivation, License

    active = DeviceActivation.objects.filter(deactivated_at__isnull=True).order_by("-activated_at")
    licences = (License.objects.filter(customer=customer).order_by("-issued_at")
                .prefetch_related(Prefetch("activations", queryset=active, to_attr="active_devices")))
    return [{"licence": lic, "devices": lic.active_devices[:RECENT_DEVICES], "count": len(lic.active_devices),
             "current": lic.subscription_id == customer.subscription_id} for lic in licences]


def _deployments(customer: Customer) -> list[dict]:
    from deployments.models import Deployment
    from deployments.selectors import deploy_readiness

    rows = []
    for d in Deployment.objects.filter(customer=customer).order_by("created_at"):
        rows.append({
            "deployment": d,
            "error": deployment_error_words(d.last_error_code, d.last_error_message) if d.last_error_code else "",
            "readiness": deploy_readiness(d),
        })
    return rows


def manage_context(customer: Customer) -> dict:
    ent = customer_entitlement(customer)
    invoices = list(Invoice.objects.filter(customer=customer).order_by("-stripe_created")[:RECENT_INVOICES])
    # A just-finalized invoice is "open" for a moment before its payment lands: offer to pay only when the
    # entitlement says a payment is actually missing.
    open_invoice = (next((i for i in invoices if i.status == "open" and i.hosted_invoice_url), None)
                    if ent.reason in PAYMENT_MISSING else None)
    plan = plan_settings(customer.plan)
    return {
        "customer": customer,
        "entitlement": ent,
        "words": entitlement_words(ent, cancel_at_period_end=customer.cancel_at_period_end),
        "plan": plan,
        "invoices": [{"invoice": i, "total": money(i.total, i.currency)} for i in invoices],
        "open_invoice": open_invoice,
        "licences": _licences(customer),
        "deployments": _deployments(customer),
        "managed_deployment": bool(plan.get("managed_deployment")),
        "has_portal": bool(customer.stripe_customer_id),
        "usage": _usage(customer),
    }


def _usage(customer: Customer) -> dict | None:
    """This period's usage per meter and the estimate at the plan's current tiers (None: usage billing off)."""
    from billing_console.invoicing.usage_selectors import customer_usage_summary

    if not settings.USAGE_METERS or not customer.stripe_customer_id:
        return None
    summary = customer_usage_summary(customer)
    for row in summary["meters"]:
        row["estimate_text"] = money(row["estimate"], row["currency"]) if row["estimate"] is not None else ""
    return summary


def deploy_context(customer: Customer) -> dict:
    from deployments.selectors import deploy_readiness

    deployments = _deployments(customer)
    plan = plan_settings(customer.plan)
    return {
        "customer": customer,
        "deployments": deployments,
        "readiness": deployments[0]["readiness"] if deployments else deploy_readiness(None),
        "entitled": customer_entitlement(customer).entitled,
        "managed_deployment": bool(plan.get("managed_deployment")),
        "plan": plan,
    }
