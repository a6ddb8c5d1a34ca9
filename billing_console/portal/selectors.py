"""What the customer pages show, read in a fixed number of queries. Entitlement, readiness and error
codes come from their owners' selectors; this module only gathers them for one customer."""
from __future__ import annotations

from django.conf import settings
from django.db.models import Prefetch

from billing_console.models import Customer, Invoice
from billing_console.wording import counted
from billing_console.wording.money import money_format
from billing_console.portal.wording import deployment_error_words, deployment_stop_words
from billing_console.selectors import Entitlement, customer_entitlement, plan_settings
from billing_console.wording.subscription import SubscriptionCopy, licence_status_words, subscription_copy

RECENT_INVOICES = 5
OWED_WINDOW = 24  # invoices read to find what is still owed (a year of monthly renewals and then some)
RECENT_DEVICES = 50


def resume_origin() -> str:
    """The pause origin the manage page acts as: the view passes it to deployment_resume, and the page offers
    Resume only when deployments.selectors.deployment_resume_block says that origin may resume."""
    from deployments.selectors import CUSTOMER_ORIGIN

    return CUSTOMER_ORIGIN


def _prices() -> dict[str, tuple[int, str, str]]:
    """price id -> (unit amount, currency, interval) from dj-stripe's mirror, when it has the prices."""
    ids = [p["price_id"] for p in settings.PLANS.values() if p["price_id"]]
    if not ids:
        return {}
    try:
        from djstripe.models import Price

        # dj-stripe 2.11 keeps a price's amount and interval only in the Stripe object it stores.
        rows = Price.objects.filter(id__in=ids).values_list("id", "currency", "stripe_data")
        return {pid: (int(data["unit_amount"]), currency, (data.get("recurring") or {}).get("interval", "month"))
                for pid, currency, data in rows if (data or {}).get("unit_amount") is not None}
    except Exception:  # the mirror is optional: the page still sells without the amounts
        return {}


def money(amount: int, currency: str) -> str:
    return money_format(amount, currency)


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


def _licences(customer: Customer, copy: SubscriptionCopy, ent: Entitlement) -> list[dict]:
    from licensing.models import DeviceActivation, License
    from licensing.selectors import license_limit_words

    active = DeviceActivation.objects.filter(deactivated_at__isnull=True).order_by("-activated_at")
    licences = (License.objects.filter(customer=customer).order_by("-issued_at")
                .prefetch_related(Prefetch("activations", queryset=active, to_attr="active_rows")))
    rows = []
    for lic in licences:
        lic.customer = customer
        current = lic.subscription_id == customer.subscription_id
        words, tone = licence_status_words(lic, copy, current=current)
        rows.append({"licence": lic, "devices": lic.active_rows[:RECENT_DEVICES], "count": lic.active_devices,
                     "count_words": f"{lic.active_devices} of {counted(lic.max_devices, 'device')}",
                     # The licence API's words: a downgrade keeps the active devices, and says so.
                     "limit_words": license_limit_words(lic, ent),
                     "current": current, "status_words": words, "status_tone": tone})
    return rows


def _deployments(customer: Customer, *, ent: Entitlement | None = None,
                 copy: SubscriptionCopy | None = None) -> list[dict]:
    from deployments.models import Deployment
    from deployments.selectors import (Readiness, customer_updates_stopped, deploy_readiness, deployment_resume_block,
                                       resume_offered)

    # The hourly push skips a customer who is not entitled, paused row or not: the subscription says why,
    # for every deployment of the customer (words from the customer row, no query per deployment).
    stopped = customer_updates_stopped(customer, ent=ent, copy=copy)
    rows = []
    for d in Deployment.objects.filter(customer=customer).select_related("customer").order_by("created_at"):
        d.customer = customer
        block = deployment_resume_block(d, by=resume_origin())
        # The subscription's words replace the automatic lock's ("ended", "locked"); a stop of the
        # deployment's own (token, support) is still said, since it needs its own fix.
        stop = deployment_stop_words(block) if d.paused and not (stopped and block in ("ended", "locked")) else ""
        readiness = deploy_readiness(d)
        if stopped and (readiness.state != Readiness.FAILED or d.status == Deployment.Status.ERRORED):
            # Not "Live" nor "at the next hourly push": the Worker still runs what it has, but nothing reaches it.
            readiness = Readiness("stopped", "Updates stopped", stopped)
        elif stopped:  # the panel says deployments are not set up here: the subscription's words still show
            stop = f"{stopped} {stop}".strip()
        rows.append({
            "deployment": d,
            "error": deployment_error_words(d.last_error_code, d.last_error_message) if d.last_error_code else "",
            "readiness": readiness,
            "can_resume": resume_offered(d, block, entitled=not stopped, by=resume_origin()),
            "stop": stop,
            "stopped": stopped,
            # "Updates are paused" for a pause the page has no other words for (an automatic lock pause is
            # the subscription's, said by `stopped`).
            "paused_note": d.paused and not stop and not (stopped and d.paused_by == Deployment.PausedBy.AUTO_LOCK),
            # The row's own status says "Active" (green) while the push skips it: the pill follows the truth.
            **({"status_words": "Updates stopped", "status_tone": "stopped"}
               if stopped and not d.paused and d.status == Deployment.Status.ACTIVE
               else {"status_words": d.get_status_display(), "status_tone": d.status}),
        })
    return rows


def _invoice_status(invoice: Invoice) -> str:
    """The invoice's word as the PDF prints it (Paid, Refunded, Void, Uncollectible, Nothing due), else its
    Stripe status."""
    from billing_console.invoicing.pdf import invoice_status_label

    return invoice_status_label(invoice).capitalize()


def manage_context(customer: Customer) -> dict:
    ent = customer_entitlement(customer)
    invoices = list(Invoice.objects.filter(customer=customer).order_by("-stripe_created")[:OWED_WINDOW])
    copy = subscription_copy(customer, invoices=invoices, ent=ent)
    plan = plan_settings(customer.plan)
    return {
        "customer": customer,
        "entitlement": ent,
        "copy": copy,
        "words": copy,
        "plan": plan,
        "invoices": [{"invoice": i, "total": money_format(i.total, i.currency), "status": _invoice_status(i)}
                     for i in invoices[:RECENT_INVOICES]],
        "licences": _licences(customer, copy, ent),
        "deployments": _deployments(customer, ent=ent, copy=copy),
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
    from deployments.releases import release_latest_read
    from deployments.selectors import deploy_readiness

    release_latest_read()  # a release published since the hourly run shows here at once
    ent = customer_entitlement(customer)
    deployments = _deployments(customer, ent=ent)
    plan = plan_settings(customer.plan)
    return {
        "customer": customer,
        "deployments": deployments,
        "readiness": deployments[0]["readiness"] if deployments else deploy_readiness(None),
        "entitled": ent.entitled,
        "managed_deployment": bool(plan.get("managed_deployment")),
        "plan": plan,
        # A plan with more than one deployment shows the connect form until its count is reached.
        "can_add": bool(plan.get("managed_deployment")) and len(deployments) < int(plan.get("deployments", 1)),
    }
