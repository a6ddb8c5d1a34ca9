import logging
from datetime import date, datetime, timedelta, timezone as dt_timezone

import pytest
from django.core import mail
from django.core.management import CommandError, call_command
from django.utils import timezone

from billing_console.models import Cohort, DriftItem, ReconciliationRun
from billing_console.invoicing.reconciliation import (
    PagedStripeView, ReconcileScopeError, Scope, reconcile_scope, reconciliation_run,
)
from billing_console.invoicing.cohorts import cohort_gate
from tests.invoicing.factories import (
    CustomerFactory, FakeStripePages, InvoiceFactory, LedgerEntryFactory, SubscribedCustomerFactory,
    dt, stripe_invoice, stripe_subscription, ts,
)

pytestmark = pytest.mark.django_db
JAN = ts(datetime(2026, 1, 5, tzinfo=dt_timezone.utc))


def paying(email, cus, sub, **kwargs):
    return SubscribedCustomerFactory(email=email, stripe_customer_id=cus, subscription_id=sub, **kwargs)


def run_with(pages: FakeStripePages, **scope) -> ReconciliationRun:
    return reconciliation_run(scope=Scope(**scope), stripe_view=PagedStripeView(pages), triggered_by="test")


def items(run) -> set[tuple]:
    return set(run.items.values_list("kind", "stripe_id", "expected", "actual", "delta"))


@pytest.fixture
def matching():
    """Two paying customers whose Stripe and console views agree."""
    paying("a@example.com", "cus_a", "sub_a")
    paying("b@example.com", "cus_b", "sub_b")
    invoices = [stripe_invoice(id=f"in_{n}", customer=c, subscription=s, status="paid", created=JAN + n)
                for n, (c, s) in enumerate([("cus_a", "sub_a"), ("cus_b", "sub_b")] * 3)]
    for inv in invoices:
        InvoiceFactory(stripe_id=inv["id"], stripe_customer_id=inv["customer"], status="paid", total=inv["total"],
                       stripe_created=datetime.fromtimestamp(inv["created"], tz=dt_timezone.utc))
    subs = [stripe_subscription(id="sub_a", customer="cus_a"), stripe_subscription(id="sub_b", customer="cus_b")]
    return FakeStripePages(invoices, subs)


def test_clean_run_is_reported_clean_with_counts(matching, caplog, settings):
    settings.OPS_EMAIL = "ops@example.com"
    caplog.set_level(logging.INFO, logger="billing_console.reconciliation")
    run = run_with(matching)
    assert run.status == ReconciliationRun.Status.CLEAN and run.drift_count == 0 and not run.items.exists()
    assert run.checked["invoices"] == 6 and run.checked["subscriptions"] == 2 and run.checked["customers"] == 2
    clean = [r for r in caplog.records if getattr(r, "event", "") == "reconcile_clean"]
    assert clean and clean[0].accounts_checked == 2
    assert len(mail.outbox) == 0


def test_stripe_is_read_page_by_page(matching):
    import billing_console.invoicing.reconciliation as rec
    rec_page = rec.PAGE_SIZE
    rec.PAGE_SIZE = 2
    try:
        run_with(matching)
    finally:
        rec.PAGE_SIZE = rec_page
    invoice_pages = [p for r, p in matching.requests if r == "invoices"]
    assert len(invoice_pages) == 3 and invoice_pages[1]["starting_after"] and invoice_pages[0]["limit"] == 2


def test_invoice_differences_are_drift_items(matching, caplog, settings):
    settings.OPS_EMAIL = "ops@example.com"
    caplog.set_level(logging.INFO, logger="billing_console.reconciliation")
    stripe_side = matching.objects["invoices"]
    stripe_side[0]["total"] = 2000                     # total differs
    stripe_side[1]["status"] = "void"                  # status differs
    stripe_side.append(stripe_invoice(id="in_new", customer="cus_a", subscription="sub_a", status="open", created=JAN + 50))
    InvoiceFactory(stripe_id="in_local_only", stripe_customer_id="cus_b", total=500, status="open")

    run = run_with(matching)
    assert run.status == ReconciliationRun.Status.DRIFT and run.drift_count == 4
    assert items(run) == {
        ("invoice_total", "in_0", "2000", "1234", 766),
        ("invoice_status", "in_1", "void", "paid", 0),
        ("invoice_missing", "in_new", "open 1234", "(absent)", 1234),
        ("invoice_total", "in_local_only", "(absent)", "open 500", -500),
    }
    assert run.items.get(stripe_id="in_0").customer.email == "a@example.com"
    drift_logs = [r for r in caplog.records if getattr(r, "event", "") == "reconcile_drift"]
    assert len(drift_logs) == 4 and {r.kind for r in drift_logs} == {"invoice_total", "invoice_status", "invoice_missing"}
    (message,) = mail.outbox
    assert message.to == ["ops@example.com"] and "4 items" in message.subject and "in_0" in message.body


def test_subscription_status_and_entitlement_drift(matching):
    leak = paying("leak@example.com", "cus_leak", "sub_leak")                         # console: active
    harmed = paying("harm@example.com", "cus_harm", "sub_harm", access_state="hard_locked")
    paying("stale@example.com", "cus_stale", "sub_stale", subscription_status="past_due")
    CustomerFactory(email="nosub@example.com", stripe_customer_id="cus_nosub")
    matching.objects["subscriptions"] += [
        stripe_subscription(id="sub_leak", customer="cus_leak", status="canceled"),
        stripe_subscription(id="sub_harm", customer="cus_harm", status="active"),
        stripe_subscription(id="sub_stale", customer="cus_stale", status="active"),
        stripe_subscription(id="sub_untracked", customer="cus_nosub", status="active"),
        stripe_subscription(id="sub_orphan", customer="cus_nobody", status="trialing"),
        stripe_subscription(id="sub_old", customer="cus_a", status="canceled"),       # ended, not tracked: fine
    ]
    run = run_with(matching)
    got = {(kind, sid) for kind, sid, *_ in items(run)}
    assert got == {
        ("subscription_status", "sub_leak"), ("revenue_leak", "sub_leak"),
        ("customer_harmed", "sub_harm"),
        ("subscription_status", "sub_stale"),
        ("subscription_status", "sub_untracked"), ("customer_harmed", ""),
        ("subscription_status", "sub_orphan"),
    }
    assert run.items.get(kind="revenue_leak").customer == leak
    assert run.items.get(kind="customer_harmed", stripe_id="sub_harm").customer == harmed
    assert run.items.get(kind="customer_harmed", stripe_id="").customer.email == "nosub@example.com"


def test_console_subscription_absent_in_stripe_is_drift_and_a_leak(matching):
    paying("ghost@example.com", "cus_ghost", "sub_ghost")
    run = run_with(matching)
    assert {(k, s) for k, s, *_ in items(run)} == {("subscription_status", "sub_ghost"), ("revenue_leak", "sub_ghost")}


def test_past_due_customer_locked_by_dunning_is_not_reported_harmed(matching):
    paying("late@example.com", "cus_late", "sub_late", subscription_status="past_due", access_state="hard_locked")
    matching.objects["subscriptions"].append(stripe_subscription(id="sub_late", customer="cus_late", status="past_due"))
    assert run_with(matching).status == ReconciliationRun.Status.CLEAN


def test_cohort_ledger_totals_are_compared_per_account_and_period(matching):
    paying("legacy@example.com", "cus_legacy", "sub_legacy", cohort="cohort-1")
    matching.objects["subscriptions"].append(stripe_subscription(id="sub_legacy", customer="cus_legacy"))
    feb = JAN + 31 * 86400
    for n, (created, status) in enumerate([(JAN, "paid"), (JAN + 100, "paid"), (feb, "paid"), (feb + 10, "open")]):
        inv = stripe_invoice(id=f"in_l{n}", customer="cus_legacy", subscription="sub_legacy", status=status, created=created)
        matching.objects["invoices"].append(inv)
        InvoiceFactory(stripe_id=inv["id"], stripe_customer_id="cus_legacy", status=status, total=inv["total"])
    LedgerEntryFactory(account="cus_legacy", period="2026-01", total=2468)      # = 2 x 1234: matches
    LedgerEntryFactory(account="cus_legacy", period="2026-02", total=1000)      # Stripe paid 1234
    LedgerEntryFactory(account="cus_legacy", period="2026-03", total=500)       # Stripe paid nothing
    LedgerEntryFactory(account="cus_a", period="2026-01", total=1)              # not in a cohort: not compared

    run = run_with(matching)
    assert {i for i in items(run)} == {
        ("ledger_total", "cus_legacy 2026-02", "1234", "1000", 234),
        ("ledger_total", "cus_legacy 2026-03", "0", "500", -500),
    }
    assert run.checked["cohorts"] == {"cohort-1": 1} and run.checked["cohort_drift"] == {"cohort-1": 2}
    assert run.checked["ledger_periods"] == 3
    Cohort.objects.create(name="cohort-1", started_at=dt(JAN - 86400))
    (gate,) = cohort_gate()
    assert gate["cohort"] == "cohort-1" and gate["clean"] is False and gate["drift"] == 2


def test_customer_and_since_scope_the_comparison(matching):
    InvoiceFactory(stripe_id="in_other", stripe_customer_id="cus_b", status="open")  # out of scope for cus_a
    scope = reconcile_scope(customer="A@example.com", since="2026-01-01")
    run = reconciliation_run(scope=scope, stripe_view=PagedStripeView(matching))
    assert run.status == "clean" and run.checked["invoices"] == 3 and run.scope == {"customer": "cus_a", "since": "2026-01-01"}
    assert all(p.get("customer") == "cus_a" for _, p in matching.requests)
    assert [p["created"] for r, p in matching.requests if r == "invoices"] == [{"gte": ts(datetime(2026, 1, 1, tzinfo=dt_timezone.utc))}]


@pytest.mark.parametrize("customer, since, message", [
    ("nobody@example.com", "", "No customer"),
    ("not-an-id", "", "email or a Stripe customer id"),
    ("", "01/02/2026", "YYYY-MM-DD|date like"),
    ("", (date.today() + timedelta(days=2)).isoformat(), "future"),
])
def test_bad_scope_is_refused(customer, since, message):
    with pytest.raises(ReconcileScopeError, match=message):
        reconcile_scope(customer=customer, since=since)
    with pytest.raises(CommandError):
        call_command("reconcile", customer=customer, since=since)
    assert not ReconciliationRun.objects.exists()


def test_customer_without_stripe_id_is_refused():
    CustomerFactory(email="new@example.com")
    with pytest.raises(ReconcileScopeError, match="no Stripe customer"):
        reconcile_scope(customer="new@example.com")


def test_stripe_failure_marks_the_run_failed_without_leaking_the_key(settings):
    settings.STRIPE_SECRET_KEY = "sk_test_" + "x" * 30

    def broken(resource, params):
        raise ConnectionError(f"could not reach Stripe with {settings.STRIPE_SECRET_KEY}")

    run = reconciliation_run(stripe_view=PagedStripeView(broken))
    assert run.status == ReconciliationRun.Status.FAILED and "ConnectionError" in run.error
    assert settings.STRIPE_SECRET_KEY not in run.error


def test_the_garbage_collector_paused_for_the_comparison_runs_again_afterwards(settings):
    import gc

    seen = []

    def broken(resource, params):
        seen.append(gc.isenabled())
        raise ConnectionError("Stripe is down")

    assert reconciliation_run(stripe_view=PagedStripeView(broken)).status == ReconciliationRun.Status.FAILED
    assert seen == [False]  # paused while the pages are compared
    assert gc.isenabled()


def test_queries_do_not_grow_with_the_number_of_invoices(django_assert_max_num_queries):
    paying("big@example.com", "cus_big", "sub_big")
    invoices = [stripe_invoice(id=f"in_big{n}", customer="cus_big", subscription="sub_big", status="paid", created=JAN + n)
                for n in range(250)]
    for inv in invoices:
        InvoiceFactory(stripe_id=inv["id"], stripe_customer_id="cus_big", status="paid", total=inv["total"])
    pages = FakeStripePages(invoices, [stripe_subscription(id="sub_big", customer="cus_big")])
    with django_assert_max_num_queries(8):
        run = run_with(pages)
    assert run.status == "clean" and run.checked["invoices"] == 250


def test_drift_items_are_written_in_batches(matching, django_assert_max_num_queries):
    matching.objects["invoices"] += [stripe_invoice(id=f"in_x{n}", customer="cus_a", created=JAN + 100 + n) for n in range(120)]
    with django_assert_max_num_queries(10):
        run = run_with(matching)
    assert run.drift_count == 120 and DriftItem.objects.filter(run=run, kind="invoice_missing").count() == 120


def test_daily_cron_records_its_counts(matching, monkeypatch):
    from billing_console.invoicing.tasks import reconcile
    from billing_console.models import CronRun

    monkeypatch.setattr("billing_console.invoicing.reconciliation.default_stripe_view", lambda: PagedStripeView(matching))
    reconcile()
    run = CronRun.objects.get(name="reconcile")
    assert run.status == "ok" and run.counts == {"drift": 0, "customers": 2, "invoices": 6, "subscriptions": 2,
                                                 "ledger_periods": 0}
    assert ReconciliationRun.objects.get().triggered_by == "cron"


def test_failed_run_marks_the_cron_as_errors(monkeypatch):
    from billing_console.invoicing.tasks import reconcile
    from billing_console.models import CronRun

    def broken(resource, params):
        raise ConnectionError("down")

    monkeypatch.setattr("billing_console.invoicing.reconciliation.default_stripe_view", lambda: PagedStripeView(broken))
    reconcile()
    assert CronRun.objects.get(name="reconcile").status == "errors"


# --- Double charges -----------------------------------------------------------------------------
def test_two_paid_invoices_of_one_subscription_for_the_same_period_are_a_double_charge(matching):
    feb = JAN + 31 * 86400
    twice = [stripe_invoice(id=f"in_dup{n}", customer="cus_a", subscription="sub_a", status="paid",
                            created=feb + n * 3600, period_start=feb) for n in range(2)]
    # Same subscription, next period; another subscription, same period; an unpaid retry; a refund-free $0:
    # none of these is a double charge.
    others = [stripe_invoice(id="in_next", customer="cus_a", subscription="sub_a", status="paid", created=feb + 9,
                             period_start=feb + 30 * 86400),
              stripe_invoice(id="in_b_same", customer="cus_b", subscription="sub_b", status="paid", created=feb + 5,
                             period_start=feb),
              stripe_invoice(id="in_open", customer="cus_a", subscription="sub_a", status="open", created=feb + 7,
                             period_start=feb),
              stripe_invoice(id="in_zero", customer="cus_a", subscription="sub_a", status="paid", created=feb + 8,
                             period_start=feb, lines=[("Credit", 0)])]
    for inv in twice + others:
        matching.objects["invoices"].append(inv)
        InvoiceFactory(stripe_id=inv["id"], stripe_customer_id=inv["customer"], status=inv["status"], total=inv["total"])
    run = run_with(matching)
    (item,) = run.items.all()
    assert (item.kind, item.delta, item.currency) == ("double_charge", 1234, "usd")
    assert item.customer.email == "a@example.com"
    # Stripe lists newest first: the later invoice is named as the second charge.
    assert item.stripe_id == "in_dup0" and item.actual == "paid twice: in_dup1 and in_dup0"
    assert item.expected.startswith("one paid invoice for sub_a 2026-02-05..")
    assert run.checked["by_kind"] == {"double_charge": 1}


def test_period_comes_from_the_lines_not_the_invoice_dates():
    from billing_console.invoicing.reconciliation import invoice_service_period

    inv = stripe_invoice(period_start=JAN, lines=[("Seat", 100), ("Seat", 200)])
    inv["lines"]["data"][1]["period"] = {"start": JAN - 86400, "end": JAN + 40 * 86400}
    inv["period_start"], inv["period_end"] = 1, 2
    assert invoice_service_period(inv) == (JAN - 86400, JAN + 40 * 86400)
    inv["lines"]["data"] = []
    assert invoice_service_period(inv) == (1, 2)
    inv["period_start"] = None
    assert invoice_service_period(inv) is None


def test_a_double_charge_is_not_resynced_but_refunded_and_explained(matching):
    from billing_console.errors import ServiceError
    from billing_console.invoicing.reconciliation import drift_item_explain, drift_item_resync

    run = run_with(matching)
    item = DriftItem.objects.create(run=run, kind="double_charge", stripe_id="in_dup0", delta=1234, currency="usd")
    with pytest.raises(ServiceError, match="refund one of the invoices"):
        drift_item_resync(item=item, actor_type="admin", actor="sam")
    item.refresh_from_db()
    assert item.resolution == "open"
    drift_item_explain(item=item, note="refunded re_123", actor_type="admin", actor="sam")
    item.refresh_from_db()
    assert item.resolution == "explained"
