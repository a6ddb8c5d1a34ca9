"""The core's charts: revenue, subscribers, churn and checkouts from the monthly snapshot, Stripe events live."""
from __future__ import annotations

from billing_console.analytics.registry import Chart, Series, Window, register_analytics_section
from billing_console.analytics.selectors import currencies, rate
from billing_console.wording import counted

DIFFERS = ("Movements are measured per customer between month ends (as Baremetrics), not per event "
           "(Stripe's daily chart): changes that cancel out inside a month do not show.")


def _money(value: int, currency: str) -> str:
    from billing_console.invoicing.services import money_format

    return money_format(value, currency)


@register_analytics_section
def revenue_charts(window: Window) -> list[Chart]:
    f, labels = window.figures, window.month_labels
    zero = [0] * len(labels)
    charts = []
    for order, ccy in enumerate(currencies(f)):
        get = lambda name: f.get((name, ccy), zero)  # noqa: E731
        mrr = get("mrr")
        series = [Series("New", get("new"), tone=1), Series("Expansion", get("expansion"), tone=2),
                  Series("Reactivated", get("reactivated"), tone=3),
                  Series("Contraction", [-v for v in get("contraction")], tone=4),
                  Series("Churned", [-v for v in get("churned")], tone=5),
                  Series("MRR", mrr, kind="line", tone=0)]
        first = next((i for i, v in enumerate(mrr) if v), 0)
        caption = (f"MRR in {ccy.upper()} is {_money(mrr[-1], ccy)} now, against {_money(mrr[first], ccy)} "
                   f"at the end of {labels[first]}. Bars above the axis added MRR in the month, bars below lost it.")
        charts.append(Chart(slug=f"mrr-{ccy}", section="Revenue", title=f"MRR and its movements, {ccy.upper()}",
                            caption=caption, labels=labels, series=series, unit="money", currency=ccy,
                            note="Monthly recurring revenue after discounts, tax excluded, yearly plans divided by 12. "
                                 + DIFFERS, order=10 + order))
    if not charts:
        charts.append(Chart(slug="mrr", section="Revenue", title="MRR and its movements", caption="", labels=labels,
                            series=[], order=10,
                            omitted="No recurring revenue in the window yet (or the snapshot has not run: "
                                    "manage.py analytics_snapshot)."))
    return charts


@register_analytics_section
def subscriber_charts(window: Window) -> list[Chart]:
    f, labels = window.figures, window.month_labels
    plans = sorted(dim for (name, dim) in f if name == "plan_subscribers")
    total = [sum(f[("plan_subscribers", p)][i] for p in plans) for i in range(len(labels))]
    by_plan = [Series(p, f[("plan_subscribers", p)], tone=1 + i % 6) for i, p in enumerate(plans)]
    trialing, converted = f.get(("trials_open", ""), [0] * len(labels)), f.get(("trial_conversions", ""), [0] * len(labels))
    return [
        Chart(slug="subscribers", section="Subscribers", title="Paying subscribers by plan",
              caption=f"{total[-1]:,} customers pay now, across {counted(len(plans), 'plan')}; each bar is a month's end.",
              labels=labels, series=[*by_plan, Series("All plans", total, kind="line", tone=0)], order=20,
              note="A subscriber is a customer with MRR above zero; trials and fully discounted subscriptions "
                   "are not counted (as Stripe)."),
        Chart(slug="trials", section="Subscribers", title="Trials and trials converting to paid",
              caption=f"{counted(sum(converted), 'trial')} turned into paying subscriptions in the last {len(labels)} months; "
                      f"{counted(trialing[-1], 'customer')} {'is' if trialing[-1] == 1 else 'are'} trialing now.",
              labels=labels, series=[Series("Converted to paid", converted, tone=1),
                                     Series("Trialing at month end", trialing, kind="line", tone=6)], order=21),
    ]


@register_analytics_section
def churn_charts(window: Window) -> list[Chart]:
    f, labels = window.figures, window.month_labels
    n = len(labels)
    ccys = currencies(f)
    zero = [0] * n

    def total(name):
        return [sum(f.get((name, c), zero)[i] for c in ccys) for i in range(n)]

    vol, invol, subs = total("churned_voluntary_count"), total("churned_involuntary_count"), total("subscribers")
    # The subscribers at the start of a month are those at the previous month's end.
    start_subs = [None, *subs[:-1]]
    logo = [rate(vol[i] + invol[i], start_subs[i]) if start_subs[i] is not None else None for i in range(n)]
    rates = [Series("Logo churn (customers)", logo, kind="line", tone=0)]
    for k, c in enumerate(ccys):
        mrr, churned = f.get(("mrr", c), zero), f.get(("churned", c), zero)
        rates.append(Series(f"Revenue churn {c.upper()}", [rate(churned[i], mrr[i - 1]) if i else None
                                                          for i in range(n)], kind="line", tone=4 + k % 3))
    charts = [
        Chart(slug="churned-customers", section="Churn", title="Customers lost, voluntary and involuntary",
              caption=f"{counted(sum(vol), 'customer')} canceled and {sum(invol):,} ended after failed payments "
                      f"in the last {n} months.",
              labels=labels, series=[Series("Voluntary (canceled)", vol, tone=4),
                                     Series("Involuntary (failed payments)", invol, tone=5)], order=30,
              note="Involuntary: Stripe ended the subscription for failed payment (cancellation reason "
                   "payment_failed or payment_disputed), or its last invoice was left unpaid."),
        Chart(slug="churn-rates", section="Churn", title="Logo churn and revenue churn",
              caption="Share of the customers (logo) and of each currency's MRR (revenue) at the start of a "
                      "month that was lost during it.",
              labels=labels, series=rates, unit="percent", order=31,
              note="Revenue churn counts churned MRR only; contraction is shown in the MRR chart (Baremetrics "
                   "adds downgrades to its revenue churn). The first month has no start figure in the window."),
    ]
    for k, c in enumerate(ccys):
        charts.append(Chart(slug=f"churned-mrr-{c}", section="Churn", title=f"MRR lost to churn, {c.upper()}",
                            caption=f"{_money(sum(f.get(('churned', c), zero)), c)} of monthly revenue churned in the "
                                    f"last {n} months.",
                            labels=labels, unit="money", currency=c, order=32 + k,
                            series=[Series("Voluntary", f.get(("churned_voluntary", c), zero), tone=4),
                                    Series("Involuntary", f.get(("churned_involuntary", c), zero), tone=5)]))
    return charts


@register_analytics_section
def checkout_charts(window: Window) -> list[Chart]:
    f, labels = window.figures, window.month_labels
    zero = [0] * len(labels)
    names = [("checkout_started", "Started", 0), ("checkout_paid", "Paid", 1), ("checkout_abandoned", "Abandoned", 5),
             ("checkout_followed_up", "Followed up", 6), ("checkout_recovered", "Recovered", 2)]
    series = [Series(label, f.get((name, ""), zero), kind="line", tone=tone) for name, label, tone in names]
    started, paid = sum(series[0].values), sum(series[1].values)
    conv = rate(paid, started)
    return [Chart(slug="checkout-funnel", section="Checkout", title="Checkout funnel",
                  caption=f"{counted(started, 'checkout')} started in the last {len(labels)} months, {paid:,} paid"
                          + (f" ({conv} %)." if conv is not None else "."),
                  labels=labels, series=series, order=40,
                  note="By month the checkout started. Recovered: abandoned, followed up by email, and the same "
                       "buyer paid a later checkout.")]


@register_analytics_section
def stripe_event_charts(window: Window) -> list[Chart]:
    h = window.hourly
    zero = [0] * len(window.hours)
    labels, ticks = window.hour_labels, window.hour_ticks
    received, failed, applied = (h.get((k, ""), zero) for k in ("events_received", "events_failed", "events_applied"))
    # A lag exists only for hours with an applied event: elsewhere it is missing, not zero.
    lag = {k: [round(v / 1000, 1) if applied[i] else None for i, v in enumerate(h.get((k, ""), zero))]
           for k in ("events_lag_avg_ms", "events_lag_max_ms")}
    slowest = [v for v in lag["events_lag_max_ms"] if v is not None]
    return [
        Chart(slug="stripe-events", section="Operations", title="Stripe events per hour",
              caption=f"{counted(sum(received), 'event')} in the last 7 days, {sum(failed):,} failed.", labels=labels,
              ticks=ticks,
              series=[Series("Applied or waiting", [r - f for r, f in zip(received, failed)], tone=1),
                      Series("Failed", failed, tone=5)], order=60,
              note="Each event id once (Stripe's duplicate deliveries are not counted again), by hour of arrival."),
        Chart(slug="stripe-lag", section="Operations", title="Applied lag of Stripe events",
              caption=(f"The slowest event of the last 7 days took {max(slowest):,.1f} s from arrival to applied."
                       if slowest else "No event was applied in the last 7 days."),
              labels=labels, ticks=ticks, unit="seconds", order=61,
              series=[Series("Average", lag["events_lag_avg_ms"], kind="line", tone=1),
                      Series("Slowest", lag["events_lag_max_ms"], kind="line", tone=5)],
              note="From arrival at the webhook endpoint to applied by a worker (the console's own delay)."),
    ]


def dashboard_link(request):
    """The support console's front page links here (registered from AnalyticsConfig.ready)."""
    from django.urls import reverse

    from billing_console.analytics.views import PERMISSION
    from billing_console.admin.dashboard import Section, Stat

    if not request.user.has_perm(PERMISSION):
        return None
    return Section("Analytics", [Stat("Charts", "Open", url=reverse("console-analytics"),
                                      note="MRR, subscribers, churn, dunning, checkouts, operations")], order=15)
