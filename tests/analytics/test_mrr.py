"""MRR, movements, subscribers, trials and churn on a fixture history with hand-computed values
(tests/analytics/history.py says who does what; the figures below are worked out by hand from it)."""
import pytest

from billing_console.analytics.models import MonthlyFigure
from billing_console.analytics.mrr import classify, line_fields, monthly_amount
from billing_console.analytics.registry import Window
from billing_console.analytics.snapshot import analytics_figures_compute, analytics_snapshot_build
from tests.analytics.history import NOW, build_history

MONTHS = ["2026-02", "2026-03", "2026-04", "2026-05", "2026-06", "2026-07"]


@pytest.fixture
def figures(db):
    build_history()
    window, figures = analytics_figures_compute(months=6, now=NOW)
    assert [m.strftime("%Y-%m") for m in window] == MONTHS
    return lambda name, dim="usd": figures.get((name, dim), [0] * 6)


def test_mrr_per_month_in_usd(figures):
    # Feb: Bob 30 + Carol 10 + Dave 10 + Hank 10. Mar: + Alice 10. Apr: Alice 30 (upgraded), Bob 30, Dave 10,
    # Fiona 10 (Carol and Hank gone). May: Bob 22.50 (coupon), Dave gone. Jun: Carol back. Jul: unchanged.
    assert figures("mrr") == [6000, 7000, 8000, 6250, 7250, 7250]
    assert figures("subscribers") == [4, 5, 4, 3, 4, 4]


def test_each_movement_type_with_hand_computed_amounts(figures):
    assert figures("new") == [0, 1000, 1000, 0, 0, 0]  # Alice in March, Fiona (after her trial) in April
    assert figures("expansion") == [0, 0, 2000, 0, 0, 0]  # Alice's mid-April upgrade 10 -> 30, prorated line
    assert figures("contraction") == [0, 0, 0, 750, 0, 0]  # Bob's 25 % coupon from May
    assert figures("churned") == [0, 0, 2000, 1000, 0, 0]  # Carol + Hank in April, Dave in May
    assert figures("reactivated") == [0, 0, 0, 0, 1000, 0]  # Carol returns in June
    assert figures("new_count") == [0, 1, 1, 0, 0, 0]
    assert figures("churned_count") == [0, 0, 2, 1, 0, 0]


def test_movements_add_up_to_the_change_in_mrr(figures):
    mrr = figures("mrr")
    baseline = 6000  # January: the same four customers as February
    for i in range(6):
        before = mrr[i - 1] if i else baseline
        change = (figures("new")[i] + figures("expansion")[i] + figures("reactivated")[i]
                  - figures("contraction")[i] - figures("churned")[i])
        assert mrr[i] == before + change


def test_refund_void_invoice_and_one_off_charge_do_not_change_mrr(figures):
    # Bob's June payment was refunded by credit note and he bought a one-off setup fee: his MRR stays 22.50.
    # Alice's voided February invoice never made her a February subscriber.
    assert figures("mrr")[4] - figures("mrr")[3] == 1000  # only Carol's return
    assert figures("mrr")[0] == 6000  # no Alice in February


def test_other_currency_is_kept_apart(figures):
    # Erik: 2 seats x 240.00 EUR a year = 480.00 / 12 = 40.00 EUR a month, new in March.
    assert figures("mrr", "eur") == [0, 4000, 4000, 4000, 4000, 4000]
    assert figures("new", "eur") == [0, 4000, 0, 0, 0, 0]
    assert figures("subscribers", "eur") == [0, 1, 1, 1, 1, 1]


def test_churn_is_split_voluntary_and_involuntary(figures):
    # April: Carol canceled (voluntary); Hank's last invoice stayed open (involuntary, no cancel event stored).
    # May: Stripe canceled Dave for payment_failed (involuntary).
    assert figures("churned_voluntary_count") == [0, 0, 1, 0, 0, 0]
    assert figures("churned_involuntary_count") == [0, 0, 1, 1, 0, 0]
    assert figures("churned_voluntary") == [0, 0, 1000, 0, 0, 0]
    assert figures("churned_involuntary") == [0, 0, 1000, 1000, 0, 0]


def test_subscribers_by_plan_and_trials(figures):
    assert figures("plan_subscribers", "pro") == [3, 4, 2, 1, 2, 2]
    assert figures("plan_subscribers", "team") == [1, 1, 2, 2, 2, 2]
    assert figures("plan_subscribers", "price_team_year_eur") == [0, 1, 1, 1, 1, 1]
    assert figures("trial_conversions", "") == [0, 0, 1, 0, 0, 0]  # Fiona, 15 April
    assert figures("trials_open", "") == [0, 0, 0, 0, 0, 1]  # Gina, now


@pytest.mark.django_db
def test_churn_rates_on_the_page_use_the_previous_month_end():
    from billing_console.analytics.sections import churn_charts

    build_history()
    analytics_snapshot_build(months=6, now=NOW)
    window = Window(now=NOW)
    window.months = window.months[-6:]
    window.month_labels = MONTHS
    rates = {c.slug: c for c in churn_charts(window)}["churn-rates"]
    logo, usd = rates.series[0].values, rates.series[1].values
    # April: 2 of the 6 customers paying at the end of March (5 USD + 1 EUR); May: 1 of 5.
    assert logo[2:4] == [33.3, 20.0]
    # Revenue: April 20.00 of 70.00 USD; May 10.00 of 80.00 USD.
    assert usd[2:4] == [28.6, 12.5]


@pytest.mark.django_db
def test_snapshot_replaces_its_months_and_is_idempotent():
    build_history()
    analytics_snapshot_build(months=6, now=NOW)
    first = sorted(MonthlyFigure.objects.values_list("month", "figure", "dimension", "value"))
    analytics_snapshot_build(months=6, now=NOW)
    assert sorted(MonthlyFigure.objects.values_list("month", "figure", "dimension", "value")) == first
    assert MonthlyFigure.objects.get(month="2026-04-01", figure="mrr", dimension="usd").value == 8000


def test_normalising_to_a_month():
    assert monthly_amount(12000, 365 * 86400) == 1000  # yearly / 12
    assert monthly_amount(10000, 366 * 86400) == 833  # 83.333 rounded half up
    assert monthly_amount(3000, 91 * 86400) == 1000  # quarterly / 3
    assert monthly_amount(900, 28 * 86400) == 900  # February is one month
    assert monthly_amount(1000, 7 * 86400) == 4333  # weekly x 52 / 12
    assert monthly_amount(100, 1 * 86400) == 3042  # daily x 365 / 12


def test_movement_names():
    assert classify(0, 10, False) == "new"
    assert classify(0, 10, True) == "reactivated"
    assert classify(10, 0, True) == "churned"
    assert classify(10, 20, True) == "expansion"
    assert classify(20, 10, True) == "contraction"
    assert classify(10, 10, True) == ""


def test_older_line_shape_is_read():
    older = {"type": "subscription", "proration": False, "subscription": "sub_1", "subscription_item": "si_1",
             "amount": 1000, "period": {"start": 0, "end": 30 * 86400}, "price": {"id": "price_pro"},
             "discount_amounts": [{"amount": 100}]}
    fields = line_fields(older, "")
    assert (fields["subscription"], fields["item"], fields["price"], fields["net"]) == ("sub_1", "si_1", "price_pro", 900)


def test_lines_that_are_not_recurring_revenue_are_skipped():
    assert line_fields({"type": "invoiceitem", "proration": False, "amount": 500, "period": {"start": 0, "end": 1}},
                       "sub_1") is None
    assert line_fields({"type": "subscription", "amount": "1000", "period": {"start": 0, "end": 10}}, "") is None
    assert line_fields("not a line", "") is None


@pytest.mark.django_db
def test_a_rounded_proration_does_not_leave_a_few_cents_of_movement():
    """Upgrading 10.00 -> 30.00 with 16 of 31 days left: Stripe bills 15.48 (rounded). The new rate is
    the next full period's 30.00, so March shows +20.00 expansion and April nothing."""
    from tests.analytics.history import at, customer, invoice, line, monthly

    ivy = customer("ivy")
    monthly(ivy, sub="sub_ivy", item="si_ivy", price="price_pro", months=[(2026, 3)], amount=1000)
    invoice(ivy, sub="sub_ivy", created=at(2026, 3, 16), lines=[
        line(sub="sub_ivy", item="si_ivy", price="price_pro", start=at(2026, 3, 16), end=at(2026, 4),
             amount=-516, proration=True),
        line(sub="sub_ivy", item="si_ivy", price="price_team", start=at(2026, 3, 16), end=at(2026, 4),
             amount=1548, proration=True)])
    monthly(ivy, sub="sub_ivy", item="si_ivy", price="price_team", months=[(2026, 4), (2026, 5)], amount=3000)
    _, f = analytics_figures_compute(months=4, now=NOW.replace(month=5))
    assert f[("mrr", "usd")] == [0, 3000, 3000, 3000]  # Feb..May
    assert f[("new", "usd")] == [0, 3000, 0, 0]  # new in March at the rate it ended March with
    assert ("expansion", "usd") not in f


@pytest.mark.django_db
def test_a_proration_without_a_renewal_is_scaled_to_the_full_cycle():
    """Upgraded on 16 April (15 of 30 days left, 15.00 billed) and canceled before the renewal."""
    from tests.analytics.history import at, customer, ended, invoice, line, monthly

    jo = customer("jo")
    monthly(jo, sub="sub_jo", item="si_jo", price="price_pro", months=[(2026, 3), (2026, 4)], amount=1000)
    invoice(jo, sub="sub_jo", created=at(2026, 4, 16), lines=[
        line(sub="sub_jo", item="si_jo", price="price_team", start=at(2026, 4, 16), end=at(2026, 5),
             amount=1500, proration=True)])
    ended("sub_jo", when=at(2026, 5), reason="cancellation_requested")
    _, f = analytics_figures_compute(months=3, now=NOW.replace(month=5))
    assert f[("mrr", "usd")] == [1000, 3000, 0]  # Mar, Apr, May
    assert f[("expansion", "usd")] == [0, 2000, 0] and f[("churned_voluntary", "usd")] == [0, 0, 3000]
