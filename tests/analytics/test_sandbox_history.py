"""The analytics figures from real Stripe shapes: two checkouts paid on the Stripe emulator, renewals run
by its clock (one fails, then Stripe's retry pays it), every event signed through the webhook view and
applied by the worker, then the snapshot at the emulator's time."""
from datetime import datetime, timezone

import pytest

from billing_console.analytics.mrr import month_starts
from billing_console.analytics.snapshot import analytics_figures_compute
from billing_console.models import Invoice
from dunning.models import DunningCase
from tests.stripe.conftest import deliver, emulator, post_event, stripe_settings  # noqa: F401
from tests.stripe.test_checkout_flow import start_checkout

pytestmark = pytest.mark.django_db


def _now(emu) -> datetime:
    return datetime.fromtimestamp(emu.now(), tz=timezone.utc)


def test_renewals_a_failed_and_recovered_one_and_an_abandoned_checkout(client, emulator, deliver):  # noqa: F811
    from dunning.services import dunning_policy_ensure_default

    dunning_policy_ensure_default()
    seen = 0

    def apply():
        nonlocal seen
        events = emulator.events[seen:]
        seen += len(events)
        deliver(events)

    ada, _ = start_checkout(client, email="ada@example.com", plan="pro")
    ben, _ = start_checkout(client, email="ben@example.com", plan="team")
    gone, _ = start_checkout(client, email="gone@example.com", plan="pro")
    assert emulator.pay_checkout(ada.stripe_session_id)["ok"] and emulator.pay_checkout(ben.stripe_session_id)["ok"]
    apply()
    start = _now(emulator)
    ben_customer = Invoice.objects.filter(customer__email="ben@example.com").first().stripe_customer_id

    emulator.advance(days=2)  # the third checkout expires unpaid
    apply()
    # Two renewals for both; then Ben's card declines at the third and Stripe's retry (day 3) pays it.
    for _ in range(2):
        emulator.advance(days=31)
        apply()
    emulator.set_card(ben_customer, outcome="decline")
    emulator.advance(days=31)
    apply()
    assert DunningCase.objects.get().status == "open"
    emulator.set_card(ben_customer, outcome="succeed")
    emulator.advance(days=4)
    apply()
    assert DunningCase.objects.get().status == "recovered"

    now = _now(emulator)
    months, f = analytics_figures_compute(months=5, now=now)
    assert months == month_starts(now, 5)
    first = next(i for i, m in enumerate(months) if (m.year, m.month) == (start.year, start.month))
    get = lambda name, dim="usd": f.get((name, dim), [0] * 5)  # noqa: E731
    # Pro 9.00 + Team 29.00, both new in the month they paid, unchanged since: a past-due subscription stays
    # in MRR (as in Stripe) and Ben's was recovered, so no churn.
    assert get("mrr")[first:] == [3800] * (5 - first)
    assert get("new")[first] == 3800 and sum(get("new")) == 3800
    assert sum(get("churned")) == 0
    assert get("plan_subscribers", "pro")[-1] == 1 and get("plan_subscribers", "team")[-1] == 1
    # The funnel: three started in the first month, two paid, one abandoned.
    assert get("checkout_started", "")[first] == 3 and get("checkout_paid", "")[first] == 2
    assert get("checkout_abandoned", "")[first] == 1
    # Dunning: one failed renewal, recovered after the immediate email, 29.00 saved.
    failed_month = next(i for i, v in enumerate(get("dunning_failed", "")) if v)
    assert get("dunning_failed", "")[failed_month] == 1
    assert {dim: v[failed_month] for (name, dim), v in f.items() if name == "dunning_recovered" and v[failed_month]} \
        == {"email FAIL_IMMEDIATE": 1}
    assert get("dunning_saved")[failed_month] == 2900
