"""Dunning's charts on the analytics page (registered from DunningConfig.ready)."""
from __future__ import annotations

from collections import defaultdict

from django.db.models import Count, OuterRef, Subquery, Sum
from django.db.models.functions import TruncMonth

from billing_console.analytics.mrr import next_month
from billing_console.analytics.registry import Chart, Series, Window
from dunning.models import DunningCase, DunningStepLog

NO_STEP = "before any message"


def dunning_recovery_figures(months) -> dict:
    """Failed renewals and their recovery, per month the case opened (DunningCase.opened_at), one query:

    - `failed`: dunning cases opened (one per invoice whose payment failed: a failed renewal).
    - `recovered[step]`: of those, recovered (the invoice was paid, status recovered), credited to the
      last step message actually sent before the case closed: "<channel> <step code>" (e.g.
      "email SOFT_D+3"), or "before any message" when Stripe's own retry succeeded first.
    - `open` / `lost`: still open or exhausted / canceled.
    - `saved[currency]`: amount due of the recovered cases (minor units): the revenue saved.
    """
    S = DunningStepLog.Status
    last_step = (DunningStepLog.objects.filter(case=OuterRef("pk"), status=S.SENT, sent_at__lte=OuterRef("closed_at"))
                 .order_by("-sent_at", "-pk"))
    rows = (DunningCase.objects.filter(opened_at__gte=months[0], opened_at__lt=next_month(months[-1]))
            .annotate(month=TruncMonth("opened_at"),
                      step=Subquery(last_step.values("step_code")[:1]),
                      channel=Subquery(last_step.values("channel")[:1]))
            .values("month", "status", "step", "channel", "currency").order_by()
            .annotate(n=Count("id"), amount=Sum("amount_due")))
    index = {(m.year, m.month): i for i, m in enumerate(months)}
    n = len(months)
    out = {"failed": [0] * n, "open": [0] * n, "lost": [0] * n,
           "recovered": defaultdict(lambda: [0] * n), "saved": defaultdict(lambda: [0] * n)}
    for row in rows:
        i = index.get((row["month"].year, row["month"].month))
        if i is None:
            continue
        out["failed"][i] += row["n"]
        if row["status"] == DunningCase.Status.RECOVERED:
            step = f"{row['channel']} {row['step']}" if row["step"] else NO_STEP
            out["recovered"][step][i] += row["n"]
            out["saved"][(row["currency"] or "").lower()][i] += row["amount"] or 0
        elif row["status"] in DunningCase.ACTIVE:
            out["open"][i] += row["n"]
        else:
            out["lost"][i] += row["n"]
    return out


def analytics_charts(window: Window) -> list[Chart]:
    from billing_console.invoicing import money_format

    data = dunning_recovery_figures(window.months)
    labels = window.month_labels
    steps = sorted(data["recovered"], key=lambda s: (s != NO_STEP, s))
    recovered = sum(sum(v) for v in data["recovered"].values())
    failed = sum(data["failed"])
    series = [Series(f"Recovered: {step}", data["recovered"][step], tone=1 + k % 3) for k, step in enumerate(steps)]
    series += [Series("Still open", data["open"], tone=6), Series("Lost (canceled)", data["lost"], tone=5),
               Series("Failed renewals", data["failed"], kind="line", tone=0)]
    charts = [Chart(slug="dunning-recovery", section="Dunning", title="Failed renewals and how they were recovered",
                    caption=f"{failed:,} renewal(s) failed in the last {len(labels)} months; {recovered:,} were "
                            f"recovered.", labels=labels, series=series, order=50,
                    note="By month of the first failure. A recovery is credited to the last message sent before "
                         "the invoice was paid.")]
    for k, ccy in enumerate(sorted(data["saved"])):
        saved = data["saved"][ccy]
        charts.append(Chart(slug=f"dunning-saved-{ccy}", section="Dunning", title=f"Revenue saved by dunning, {ccy.upper()}",
                            caption=f"{money_format(sum(saved), ccy)} of failed invoices were paid after all.",
                            labels=labels, unit="money", currency=ccy, order=51 + k,
                            series=[Series("Recovered amount", saved, tone=2)]))
    return charts
