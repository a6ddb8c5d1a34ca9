"""Checkout funnel, dunning recovery by step, Stripe events and pushes: hand-computed figures."""
from datetime import datetime, timedelta, timezone

import pytest

from billing_console.analytics.mrr import month_starts
from billing_console.analytics.registry import Window
from billing_console.analytics.selectors import checkout_funnel_figures, stripe_event_figures
from billing_console.models import CheckoutAttempt, Customer, WebhookEvent
from dunning.analytics import NO_STEP, dunning_recovery_figures
from dunning.models import Channel, DunningCase, DunningStepLog
from tests.dunning.factories import DunningCaseFactory, DunningStepLogFactory

NOW = datetime(2026, 7, 15, 12, 0, tzinfo=timezone.utc)
MONTHS = month_starts(NOW, 3)  # May, June, July


def _attempt(created, status, *, email="", follow_up="none", follow_up_at=None, customer=None, completed=None):
    attempt = CheckoutAttempt(plan="pro", price_id="price_pro", status=status, follow_up_status=follow_up,
                              email_hint="x***@example.com", customer=customer)
    if email:
        attempt.recovery_email = email
    attempt.save()
    CheckoutAttempt.objects.filter(pk=attempt.pk).update(created_at=created, follow_up_sent_at=follow_up_at,
                                                          completed_at=completed)
    return attempt


@pytest.mark.django_db
def test_checkout_funnel_by_month_with_a_recovered_abandonment():
    june = datetime(2026, 6, 3, tzinfo=timezone.utc)
    buyer = Customer.objects.create(email="back@example.com")
    _attempt(june, "paid", customer=Customer.objects.create(email="straight@example.com"), completed=june)
    # Abandoned, followed up on 4 June, and the same buyer paid a new checkout on 6 June: recovered.
    _attempt(june, "abandoned", email="Back@Example.com", follow_up="sent", follow_up_at=june + timedelta(days=1))
    _attempt(june + timedelta(days=3), "paid", customer=buyer, completed=june + timedelta(days=3))
    # Abandoned and followed up, never came back.
    _attempt(june, "abandoned", email="gone@example.com", follow_up="sent", follow_up_at=june + timedelta(days=1))
    # Abandoned without an address to follow up.
    _attempt(june, "abandoned", follow_up="skipped")
    # Paid before the follow-up was sent: not a recovery.
    early = Customer.objects.create(email="early@example.com")
    _attempt(june, "abandoned", email="early@example.com", follow_up="sent", follow_up_at=june + timedelta(days=2))
    _attempt(june, "paid", customer=early, completed=june + timedelta(days=1))
    # July: one still pending. April: outside the window.
    _attempt(datetime(2026, 7, 2, tzinfo=timezone.utc), "pending")
    _attempt(datetime(2026, 4, 30, tzinfo=timezone.utc), "paid")

    f = checkout_funnel_figures(MONTHS, NOW)
    assert f[("checkout_started", "")] == [0, 7, 1]
    assert f[("checkout_paid", "")] == [0, 3, 0]
    assert f[("checkout_abandoned", "")] == [0, 4, 0]
    assert f[("checkout_followed_up", "")] == [0, 3, 0]
    assert f[("checkout_recovered", "")] == [0, 1, 0]


@pytest.mark.django_db
def test_dunning_recovery_by_step_and_revenue_saved():
    may, june = datetime(2026, 5, 4, tzinfo=timezone.utc), datetime(2026, 6, 8, tzinfo=timezone.utc)
    # May: recovered after the D+1 email; recovered after the D+3 WhatsApp (the D+1 email came first);
    # recovered before any message (Stripe's retry); one canceled.
    a = DunningCaseFactory(opened_at=may, status=DunningCase.Status.RECOVERED, closed_at=may + timedelta(days=2),
                           amount_due=1000)
    DunningStepLogFactory(case=a, step_code="SOFT_D+1", status=DunningStepLog.Status.SENT, sent_at=may + timedelta(days=1))
    b = DunningCaseFactory(opened_at=may, status=DunningCase.Status.RECOVERED, closed_at=may + timedelta(days=4),
                           amount_due=3000)
    DunningStepLogFactory(case=b, step_code="SOFT_D+1", status=DunningStepLog.Status.SENT, sent_at=may + timedelta(days=1))
    DunningStepLogFactory(case=b, step_code="SOFT_D+3", channel=Channel.WHATSAPP, status=DunningStepLog.Status.SENT,
                          sent_at=may + timedelta(days=3))
    # A step queued after the payment does not take the credit.
    DunningStepLogFactory(case=b, step_code="SOFT_D+7", status=DunningStepLog.Status.SENT, sent_at=may + timedelta(days=7))
    DunningCaseFactory(opened_at=may, status=DunningCase.Status.RECOVERED, closed_at=may + timedelta(hours=5),
                       amount_due=500, currency="eur")
    DunningCaseFactory(opened_at=may, status=DunningCase.Status.CANCELED, closed_at=may + timedelta(days=20))
    # June: one open, one exhausted.
    DunningCaseFactory(opened_at=june)
    DunningCaseFactory(opened_at=june, status=DunningCase.Status.EXHAUSTED)

    f = dunning_recovery_figures(MONTHS)
    assert f[("dunning_failed", "")] == [4, 2, 0]
    assert {dim: v for (name, dim), v in f.items() if name == "dunning_recovered"} == {
        "email SOFT_D+1": [1, 0, 0], "whatsapp SOFT_D+3": [1, 0, 0], NO_STEP: [1, 0, 0]}
    assert f[("dunning_open", "")] == [0, 2, 0]
    assert f[("dunning_lost", "")] == [1, 0, 0]
    assert {dim: v for (name, dim), v in f.items() if name == "dunning_saved"} == {"usd": [4000, 0, 0],
                                                                                  "eur": [500, 0, 0]}


@pytest.mark.django_db
def test_stripe_events_per_hour_with_failures_and_applied_lag():
    window = Window(now=NOW)
    hour = NOW.replace(minute=0) - timedelta(hours=2)
    for i, (status, lag) in enumerate([("processed", 2), ("processed", 4), ("failed", None), ("received", None)]):
        event = WebhookEvent.objects.create(stripe_id=f"evt_ops{i}", type="invoice.paid", stripe_created=hour,
                                            payload={}, status=status)
        WebhookEvent.objects.filter(pk=event.pk).update(
            received_at=hour + timedelta(minutes=5), processed_at=hour + timedelta(minutes=5, seconds=lag) if lag else None)
    old = WebhookEvent.objects.create(stripe_id="evt_old", type="invoice.paid", stripe_created=hour, payload={})
    WebhookEvent.objects.filter(pk=old.pk).update(received_at=NOW - timedelta(days=8))

    f = stripe_event_figures(window.hours)
    i = window.hours.index(hour)
    assert len(window.hours) == 168
    assert [f[(k, "")][i] for k in ("events_received", "events_failed", "events_applied", "events_lag_avg_ms",
                                    "events_lag_max_ms")] == [4, 1, 2, 3000, 4000]
    assert sum(f[("events_received", "")]) == 4  # the 8-day-old event is outside the window

    # Stored by the hourly snapshot and drawn from the stored rows.
    from billing_console.analytics.sections import stripe_event_charts
    from billing_console.analytics.snapshot import analytics_hourly_build

    analytics_hourly_build(now=NOW)
    charts = {c.slug: c for c in stripe_event_charts(Window(now=NOW))}
    assert charts["stripe-events"].series[0].values[i] == 3 and charts["stripe-events"].series[1].values[i] == 1
    assert charts["stripe-lag"].series[1].values[i] == 4.0
    assert charts["stripe-lag"].series[1].values[i - 1] is None  # nothing applied: no lag, not zero


@pytest.mark.django_db
def test_push_outcomes_per_day():
    from deployments.analytics import push_outcome_figures
    from deployments.models import Deployment, PublishVersion
    from tests.core.factories import SubscribedCustomerFactory

    window = Window(now=NOW)
    deployment = Deployment.objects.create(customer=SubscribedCustomerFactory(), account_id="acc", script_name="app")
    day = window.days[-2] + timedelta(hours=3)  # an hour start
    for n, status in enumerate(["live", "failed", "superseded", "queued", "rolled_back"], start=1):
        p = PublishVersion.objects.create(deployment=deployment, number=n, version="1.0.0", status=status)
        PublishVersion.objects.filter(pk=p.pk).update(created_at=day)
    f = push_outcome_figures(window.hours)
    i = window.hours.index(day)
    assert {k: v[i] for (k, _), v in f.items()} == {"push_live": 1, "push_failed": 1, "push_rolled_back": 1,
                                                    "push_superseded": 1, "push_in_flight": 1}
    assert sum(sum(v) for v in f.values()) == 5

    from billing_console.analytics.snapshot import analytics_hourly_build
    from deployments.analytics import analytics_charts

    analytics_hourly_build(now=NOW)
    chart = analytics_charts(Window(now=NOW))[0]
    assert [s.values[-2] for s in chart.series] == [1, 1, 1, 1, 1] and sum(chart.series[0].values) == 1
