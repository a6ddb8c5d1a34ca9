"""Every figure of the analytics page, defined once. The snapshot (`snapshot.py`) stores the monthly ones;
the page reads them back with `monthly_figures` and asks the live ones (operations) directly.

Months are calendar months in UTC. A month's value is measured at its end (the first instant of the next
month), or now for the month still running. Money is in minor units of one currency and is never summed
across currencies.

MRR and its movements follow Stripe's Billing overview and Baremetrics (see `mrr.py` for how a line
becomes a monthly amount). Where this console differs:
- movements are computed per customer between month ends, as Baremetrics does, not per event as
  Stripe's daily chart does: a customer who upgrades and downgrades inside one month shows only the
  net change, and one who joins and leaves inside a month shows nothing;
- revenue churn counts only churned MRR; contraction is shown on its own (Baremetrics folds
  downgrades into its revenue churn rate);
- a customer who stops paying because a coupon made the subscription free counts as churned.
"""
from __future__ import annotations

from collections import defaultdict
from datetime import datetime, timedelta

from django.db.models import Avg, Count, DurationField, ExpressionWrapper, F, Max, Q
from django.db.models.functions import TruncHour

from billing_console.analytics.mrr import MOVEMENTS, classify

# --- Monthly figures (stored by the snapshot) ------------------------------------------------------


def mrr_figures(histories, instants: list[int], out: dict | None = None) -> dict[tuple[str, str], list[int]]:
    """MRR, subscribers, movements and churn per currency, for each month whose end is in `instants`
    (the first instant is the baseline month before the window and gets no values of its own).

    - `mrr` [currency]: the sum of every customer's MRR at the month's end.
    - `subscribers` [currency]: customers with MRR above zero at the month's end (trials excluded).
    - `new` / `reactivated` [currency]: MRR of customers with none at the previous month end and some at
      this one; reactivated when they had paid before (any paying period that started earlier), new
      otherwise. `*_count`: how many customers.
    - `expansion` / `contraction` [currency]: the rise / fall of customers paying at both month ends.
    - `churned` [currency]: the previous month end's MRR of customers with none at this one.
      `churned_voluntary` / `churned_involuntary` split it (and `*_count` the customers): involuntary when
      the subscription that paid ended with Stripe's `cancellation_details.reason` payment_failed or
      payment_disputed, or, with no cancellation recorded, its newest invoice was left unpaid (open or
      uncollectible); voluntary otherwise (the customer or support canceled).
    The identity mrr[m] = mrr[m-1] + new + expansion + reactivated - contraction - churned holds exactly.
    """
    n = len(instants) - 1
    out = defaultdict(lambda: [0] * n) if out is None else out
    for h in histories:
        cur_ccy = h.currency
        values = [h.mrr_at(at) for at in instants]
        for i in range(1, len(instants)):
            prev, cur = values[i - 1], values[i]
            m = i - 1
            out[("mrr", cur_ccy)][m] += cur
            out[("subscribers", cur_ccy)][m] += cur > 0
            kind = classify(prev, cur, h.paid_before(instants[i - 1]) if prev == 0 and cur > 0 else False)
            if not kind:
                continue
            change = abs(cur - prev)
            out[(kind, cur_ccy)][m] += change
            out[(f"{kind}_count", cur_ccy)][m] += 1
            if kind == "churned":
                why = "involuntary" if h.churn_involuntary(instants[i - 1]) else "voluntary"
                out[(f"churned_{why}", cur_ccy)][m] += change
                out[(f"churned_{why}_count", cur_ccy)][m] += 1
    return dict(out)


def subscriber_figures(histories, instants: list[int], out: dict | None = None) -> dict[tuple[str, str], list[int]]:
    """Subscribers by plan and trials, for each month whose end is in `instants` (first = baseline).

    - `plan_subscribers` [plan]: customers with MRR above zero at the month's end, under the plan of their
      largest paying line (plan code from the price, else the price id). Counted across currencies: a
      customer is one subscriber whatever they pay in.
    - `trialing` []: customers whose every line covering the month's end is a trial (a zero-amount period).
    - `trial_conversions` []: customers whose first paying period after a trial started in the month.
    """
    n = len(instants) - 1
    out = defaultdict(lambda: [0] * n) if out is None else out
    for h in histories:
        for i in range(1, len(instants)):
            at = instants[i]
            plan = h.plan_at(at)
            if plan:
                out[("plan_subscribers", plan)][i - 1] += 1
            if h.trialing_at(at):
                out[("trials_open", "")][i - 1] += 1
        converted = h.first_paid_after_trial()
        if converted is not None:
            for i in range(1, len(instants)):
                if instants[i - 1] < converted <= instants[i]:
                    out[("trial_conversions", "")][i - 1] += 1
    return dict(out)


def checkout_funnel_figures(months: list[datetime], now: datetime) -> dict[tuple[str, str], list[int]]:
    """The checkout funnel per month of the attempt's start (CheckoutAttempt.created_at):

    - `checkout_started`: attempts created (the buyer pressed Subscribe; the console called Stripe).
    - `checkout_paid`: of those, paid (checkout.session.completed).
    - `checkout_abandoned`: of those, abandoned (checkout.session.expired).
    - `checkout_followed_up`: abandoned attempts whose follow-up email was sent.
    - `checkout_recovered`: followed-up attempts whose buyer (the same email, read from the encrypted
      recovery address) paid another checkout after the follow-up was sent.
    Attempts still pending are started but in none of the later steps.
    """
    from billing_console.analytics.mrr import next_month
    from billing_console.models import CheckoutAttempt

    S, F = CheckoutAttempt.Status, CheckoutAttempt.FollowUp
    start, end = months[0], min(next_month(months[-1]), now + timedelta(seconds=1))
    rows = (CheckoutAttempt.objects.filter(created_at__gte=start, created_at__lt=end)
            .values_list("created_at", "status", "follow_up_status"))
    index = {(m.year, m.month): i for i, m in enumerate(months)}
    out: dict[tuple[str, str], list[int]] = defaultdict(lambda: [0] * len(months))
    for created, status, follow_up in rows.iterator(chunk_size=5000):
        i = index.get((created.year, created.month))
        if i is None:
            continue
        out[("checkout_started", "")][i] += 1
        out[("checkout_paid", "")][i] += status == S.PAID
        out[("checkout_abandoned", "")][i] += status == S.ABANDONED
        out[("checkout_followed_up", "")][i] += status == S.ABANDONED and follow_up == F.SENT
    # Recovered: decrypt only the followed-up attempts (few), then one query for their buyers' paid checkouts.
    followed = list(CheckoutAttempt.objects.filter(created_at__gte=start, created_at__lt=end, status=S.ABANDONED,
                                                   follow_up_status=F.SENT)
                    .only("id", "created_at", "follow_up_sent_at", "recovery_email_encrypted"))
    emails = {}
    for attempt in followed:
        try:
            email = (attempt.recovery_email or "").strip().lower()
        except Exception:  # a row under a key no longer in the keyring cannot be matched
            email = ""
        if email:
            emails[attempt.pk] = email
    paid_at: dict[str, list[datetime]] = defaultdict(list)
    for email, completed in (CheckoutAttempt.objects.filter(status=S.PAID, customer__email__in=set(emails.values()))
                             .values_list("customer__email", "completed_at")):
        if completed:
            paid_at[email.lower()].append(completed)
    for attempt in followed:
        email = emails.get(attempt.pk)
        sent = attempt.follow_up_sent_at
        if email and sent and any(t > sent for t in paid_at.get(email, [])):
            i = index.get((attempt.created_at.year, attempt.created_at.month))
            if i is not None:
                out[("checkout_recovered", "")][i] += 1
    return dict(out)


def monthly_figures(months: list[datetime]) -> dict[tuple[str, str], list[int]]:
    """The stored figures of these months (one query): {(figure, dimension): [value per month]}, and
    `("computed_at", "")`: when the newest snapshot was taken (None when never)."""
    from billing_console.analytics.models import MonthlyFigure

    index = {m.date(): i for i, m in enumerate(months)}
    out: dict = defaultdict(lambda: [0] * len(months))
    newest = None
    for month, figure, dimension, value, computed in (MonthlyFigure.objects.filter(month__in=list(index))
                                                      .values_list("month", "figure", "dimension", "value",
                                                                   "computed_at")):
        out[(figure, dimension)][index[month]] = value
        newest = computed if newest is None or computed > newest else newest
    result = dict(out)
    result[("computed_at", "")] = newest
    return result


def currencies(figures: dict) -> list[str]:
    """The currencies that had MRR or a movement in the window, most MRR first."""
    totals: dict[str, int] = defaultdict(int)
    for (figure, dim), values in figures.items():
        if figure in ("mrr", *MOVEMENTS) and dim:
            totals[dim] += sum(values)
    return sorted((c for c, t in totals.items() if t), key=lambda c: (-totals[c], c))


def rate(numerator: int, denominator: int) -> float | None:
    """A percentage with one decimal, or None when the base is zero (no rate, not 0 %)."""
    return round(100 * numerator / denominator, 1) if denominator else None


def hourly_figures(hours: list[datetime]) -> dict:
    """The stored hourly figures of these hours (one query): {(figure, dimension): [value per hour]}, and
    `("computed_at", "")`: when the newest hourly snapshot was taken (None when never)."""
    from billing_console.analytics.models import HourlyFigure

    index = {h: i for i, h in enumerate(hours)}
    out: dict = defaultdict(lambda: [0] * len(hours))
    newest = None
    for hour, figure, dimension, value, computed in (HourlyFigure.objects.filter(hour__gte=hours[0])
                                                     .values_list("hour", "figure", "dimension", "value",
                                                                  "computed_at")):
        i = index.get(hour)
        if i is not None:
            out[(figure, dimension)][i] = value
        newest = computed if newest is None or computed > newest else newest
    result = dict(out)
    result[("computed_at", "")] = newest
    return result


# --- Hourly figures (operations, last 7 days; stored every hour) ------------------------------------
def stripe_event_figures(hours: list[datetime], now: datetime | None = None) -> dict[tuple[str, str], list]:
    """Stripe events per hour of arrival (WebhookEvent.received_at), in one query:

    - `events_received`: events stored (each event id once; Stripe's duplicate deliveries are not counted
      again).
    - `events_failed`: of those, now in the failed state (their handler raised; retried or replayable).
    - `events_applied`: of those, applied (processed_at set).
    - `events_lag_avg_ms` / `events_lag_max_ms`: milliseconds from arrival to applied (processed_at -
      received_at) over the events of the hour already applied: the console's own delay, not Stripe's
      delivery delay. Absent (no row) when nothing of the hour was applied.
    """
    from billing_console.models import WebhookEvent

    index = {h: i for i, h in enumerate(hours)}
    out: dict[tuple[str, str], list] = {(k, ""): [0] * len(hours)
                                        for k in ("events_received", "events_failed", "events_applied")}
    applied = ExpressionWrapper(F("processed_at") - F("received_at"), output_field=DurationField())
    # stripe_created is indexed and never after received_at: it bounds the scan to the window (plus a day for
    # events Stripe delivered late).
    rows = (WebhookEvent.objects.filter(received_at__gte=hours[0], stripe_created__gte=hours[0] - timedelta(days=1))
            .annotate(hour=TruncHour("received_at")).values("hour").order_by("hour")
            .annotate(received=Count("id"), failed=Count("id", filter=Q(status=WebhookEvent.Status.FAILED)),
                      applied_n=Count("id", filter=Q(processed_at__isnull=False)),
                      lag_avg=Avg(applied, filter=Q(processed_at__isnull=False)),
                      lag_max=Max(applied, filter=Q(processed_at__isnull=False))))
    for row in rows:
        i = index.get(row["hour"])
        if i is None:
            continue
        out[("events_received", "")][i] = row["received"]
        out[("events_failed", "")][i] = row["failed"]
        out[("events_applied", "")][i] = row["applied_n"]
        if row["lag_avg"] is not None:
            out.setdefault(("events_lag_avg_ms", ""), [0] * len(hours))[i] = round(row["lag_avg"].total_seconds() * 1000)
            out.setdefault(("events_lag_max_ms", ""), [0] * len(hours))[i] = round(row["lag_max"].total_seconds() * 1000)
    return out
