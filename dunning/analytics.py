"""Dunning's figures and charts on the analytics page (registered from DunningConfig.ready)."""
from __future__ import annotations

from collections import defaultdict

from django.db.models import Count, OuterRef, Subquery, Sum, Value
from django.db.models.functions import Concat, TruncMonth

from billing_console.analytics.mrr import next_month
from billing_console.analytics.registry import Chart, Series, Window
from dunning.models import DunningCase, DunningStepLog
from billing_console.wording import counted

NO_STEP = "before any message"


def dunning_recovery_figures(months, now=None) -> dict[tuple[str, str], list[int]]:
    """Failed renewals and their recovery, per month the case opened (DunningCase.opened_at), one query.
    Stored by the daily snapshot:

    - `dunning_failed`: dunning cases opened (one per invoice whose payment failed: a failed renewal).
    - `dunning_recovered` [step]: of those, recovered (the invoice was paid: status recovered), credited to
      the last step message actually sent before the case closed, "<channel> <step code>" (e.g.
      "email SOFT_D+3"), or "before any message" when Stripe's own retry succeeded first.
    - `dunning_open`: still open or exhausted (every step sent, still unpaid).
    - `dunning_lost`: canceled (the subscription ended unpaid).
    - `dunning_saved` [currency]: amount due of the recovered cases in minor units: the revenue saved.
    """
    last_step = (DunningStepLog.objects.filter(case=OuterRef("pk"), status=DunningStepLog.Status.SENT,
                                               sent_at__lte=OuterRef("closed_at"))
                 .order_by("-sent_at", "-pk").annotate(label=Concat("channel", Value(" "), "step_code"))
                 .values("label")[:1])
    rows = (DunningCase.objects.filter(opened_at__gte=months[0], opened_at__lt=next_month(months[-1]))
            .annotate(month=TruncMonth("opened_at"), step=Subquery(last_step))
            .values("month", "status", "step", "currency").order_by()
            .annotate(n=Count("id"), amount=Sum("amount_due")))
    index = {(m.year, m.month): i for i, m in enumerate(months)}
    out: dict[tuple[str, str], list[int]] = defaultdict(lambda: [0] * len(months))
    for key in ("dunning_failed", "dunning_open", "dunning_lost"):
        out[(key, "")]  # present even when zero
    for row in rows:
        i = index.get((row["month"].year, row["month"].month))
        if i is None:
            continue
        out[("dunning_failed", "")][i] += row["n"]
        if row["status"] == DunningCase.Status.RECOVERED:
            out[("dunning_recovered", row["step"] or NO_STEP)][i] += row["n"]
            out[("dunning_saved", (row["currency"] or "").lower())][i] += row["amount"] or 0
        elif row["status"] in DunningCase.ACTIVE:
            out[("dunning_open", "")][i] += row["n"]
        else:
            out[("dunning_lost", "")][i] += row["n"]
    return dict(out)


def analytics_charts(window: Window) -> list[Chart]:
    from billing_console.invoicing.services import money_format

    f, labels = window.figures, window.month_labels
    zero = [0] * len(labels)
    steps = sorted((dim for (name, dim) in f if name == "dunning_recovered"), key=lambda s: (s != NO_STEP, s))
    recovered = sum(sum(f[("dunning_recovered", s)]) for s in steps)
    failed = f.get(("dunning_failed", ""), zero)
    series = [Series(f"Recovered {step}" if step == NO_STEP else f"Recovered after {step}", f[("dunning_recovered", step)],
                     tone=1 + k % 3) for k, step in enumerate(steps)]
    series += [Series("Still open", f.get(("dunning_open", ""), zero), tone=6),
               Series("Lost (canceled)", f.get(("dunning_lost", ""), zero), tone=5),
               Series("Failed renewals", failed, kind="line", tone=0)]
    charts = [Chart(slug="dunning-recovery", section="Dunning", title="Failed renewals and how they were recovered",
                    caption=f"{counted(sum(failed), 'renewal')} failed in the last {len(labels)} months; {recovered:,} were "
                            f"recovered.", labels=labels, series=series, order=50,
                    note="By month of the first failure. A recovery is credited to the last message sent before "
                         "the invoice was paid.")]
    for k, ccy in enumerate(sorted(dim for (name, dim) in f if name == "dunning_saved")):
        saved = f[("dunning_saved", ccy)]
        charts.append(Chart(slug=f"dunning-saved-{ccy}", section="Dunning", title=f"Revenue saved by dunning, {ccy.upper()}",
                            caption=f"{money_format(sum(saved), ccy)} of failed invoices were paid after all.",
                            labels=labels, unit="money", currency=ccy, order=51 + k,
                            series=[Series("Recovered amount", saved, tone=2)]))
    return charts
