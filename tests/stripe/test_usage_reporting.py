"""report_usage against the Stripe emulator: windows, identifiers, exactly-once, errors, setup_meters."""
from datetime import timedelta
from decimal import Decimal

import pytest
from django.core.management import call_command
from django.db import connection
from django.core.management.base import CommandError
from django.utils import timezone

from billing_console.invoicing import usage
from billing_console.invoicing.usage_meters import usage_meter_ids, usage_meters_setup
from billing_console.invoicing.usage_selectors import usage_ops_section
from billing_console.models import AuditEvent, Customer, UsageEvent, UsageReport
from billing_console.stripe import gateway
from tests.stripe.conftest import emulator, stripe_settings  # noqa: F401  (fixtures)

METERS = {"api_calls": {"event_name": "api_calls", "formula": "sum", "display_name": "API calls"},
          "exports": {"event_name": "exports", "formula": "count", "display_name": "Exports"}}


@pytest.fixture
def metered(emulator, settings):
    settings.USAGE_METERS = METERS
    settings.USAGE_REPORT_WINDOW_SECONDS = 60
    settings.USAGE_REPORT_RETRY_BASE_SECONDS = 60
    usage_meters_setup()
    return emulator


def stripe_customer(email):
    created = gateway.client().v1.customers.create(params={"email": email}).to_dict()
    return Customer.objects.create(email=email, stripe_customer_id=created["id"])


def ingest(customer, *items):
    events = [{"customer": customer.email, "meter": m, "quantity": q, "idempotency_key": k,
               **({"timestamp": int(t.timestamp())} if t else {})} for m, q, k, t in items]
    return usage.usage_events_ingest(events=events)


def stripe_total(emu, customer, meter_key, start, end):
    meter_id = usage_meter_ids()[meter_key]
    return sum(Decimal(str(s["aggregated_value"])) for s in gateway.meter_event_summaries(
        meter_id, customer=customer.stripe_customer_id, start_time=start // 60 * 60, end_time=(end // 60 + 1) * 60))


@pytest.mark.django_db
def test_setup_meters_creates_then_checks(metered, capsys):
    names = {m["event_name"]: m for m in metered.list_objects("billing.meter")}
    assert set(names) == {"api_calls", "exports"}
    assert {m["default_aggregation"]["formula"] for m in names.values()} == {"sum"}
    call_command("setup_meters")
    assert "api_calls: ok" in capsys.readouterr().out
    assert len(metered.list_objects("billing.meter")) == 2  # nothing created twice


@pytest.mark.django_db
def test_setup_meters_flags_a_meter_that_does_not_sum(emulator, settings):
    settings.USAGE_METERS = {"seats": {"event_name": "seats", "formula": "sum", "display_name": "Seats"}}
    gateway.meter_create(params={"display_name": "Seats", "event_name": "seats",
                                 "default_aggregation": {"formula": "last"}}, idempotency_key="bc-test-seats")
    with pytest.raises(CommandError, match="1 meter"):
        call_command("setup_meters")
    assert usage_meters_setup()[0]["status"] == "mismatch"


@pytest.mark.django_db
def test_windows_are_reported_once_with_their_totals(metered):
    buyer = stripe_customer("buyer@example.com")
    now = timezone.now().replace(second=30, microsecond=0)
    earlier = now - timedelta(minutes=10)
    ingest(buyer, ("api_calls", 5, "a", earlier), ("api_calls", "2.5", "b", earlier), ("api_calls", 7, "c", now),
           ("exports", 40, "d", now), ("exports", 1, "e", now))
    result = usage.usage_report_run()
    assert (result["claimed"], result["sent"]) == (3, 3)
    reports = {(r.meter, r.window_start): r for r in UsageReport.objects.all()}
    assert {k: (v.quantity, v.event_count, v.state) for k, v in reports.items()} == {
        ("api_calls", usage.window_of(earlier)): (Decimal("7.5"), 2, "sent"),
        ("api_calls", usage.window_of(now)): (Decimal(7), 1, "sent"),
        ("exports", usage.window_of(now)): (Decimal(2), 2, "sent"),  # count: events, not quantities
    }
    assert not UsageEvent.objects.filter(report=None).exists()
    start, end = int(earlier.timestamp()), int(now.timestamp())
    assert stripe_total(metered, buyer, "api_calls", start, end) == Decimal("14.5")
    assert stripe_total(metered, buyer, "exports", start, end) == 2
    # A second run has nothing to claim or send.
    assert usage.usage_report_run() == {"claimed": 0}


@pytest.mark.django_db
def test_a_resend_after_a_crash_is_deduplicated_by_the_identifier(metered):
    buyer = stripe_customer("buyer@example.com")
    now = timezone.now()
    ingest(buyer, ("api_calls", 5, "a", None))
    usage.usage_report_run(now=now)
    # The worker died after Stripe counted the event but before recording it: the lease runs out.
    UsageReport.objects.update(state=UsageReport.State.SENDING, next_attempt_at=now - timedelta(seconds=1))
    counts = usage.usage_report_run(now=now)
    assert counts == {"claimed": 0, "sent": 1}  # the same request again: Stripe replays its first answer
    assert UsageReport.objects.get().state == "sent"
    start = int(now.timestamp()) - 120
    assert stripe_total(metered, buyer, "api_calls", start, int(now.timestamp())) == 5


@pytest.mark.django_db
def test_duplicate_meter_event_counts_as_already_sent(metered):
    buyer = stripe_customer("buyer@example.com")
    now = timezone.now()
    ingest(buyer, ("api_calls", 5, "a", None))
    usage.usage_reports_claim(now=now)
    report = UsageReport.objects.get()
    # Another sender already delivered this identifier (another idempotency key: no replay, Stripe's dedupe).
    gateway.client().v1.billing.meter_events.create(params={
        "event_name": "api_calls", "identifier": report.identifier, "timestamp": int(now.timestamp()),
        "payload": {"stripe_customer_id": buyer.stripe_customer_id, "value": "5"}})
    assert usage.usage_reports_send(now=now) == {"duplicate": 1}
    report.refresh_from_db()
    assert (report.state, report.error_code) == ("sent", "duplicate_meter_event")
    assert stripe_total(metered, buyer, "api_calls", int(now.timestamp()) - 120, int(now.timestamp())) == 5


@pytest.mark.django_db
def test_late_events_in_a_reported_window_get_their_own_report(metered):
    buyer = stripe_customer("buyer@example.com")
    at = timezone.now() - timedelta(minutes=3)
    ingest(buyer, ("api_calls", 5, "a", at))
    usage.usage_report_run()
    ingest(buyer, ("api_calls", 3, "b", at))
    usage.usage_report_run()
    reports = list(UsageReport.objects.order_by("id"))
    assert [r.quantity for r in reports] == [5, 3]
    assert reports[0].identifier != reports[1].identifier
    assert stripe_total(metered, buyer, "api_calls", int(at.timestamp()), int(at.timestamp())) == 8


@pytest.mark.django_db
def test_transient_errors_are_retried_with_backoff(metered):
    buyer = stripe_customer("buyer@example.com")
    now = timezone.now()
    ingest(buyer, ("api_calls", 5, "a", None))
    metered.set_faults(api_500=2)  # stripe-python's own retry gets a 500 too
    assert usage.usage_report_run(now=now)["retry"] == 1
    report = UsageReport.objects.get()
    assert (report.state, report.attempts, report.error_code) == ("retry", 1, "api_error")
    assert report.next_attempt_at == now + timedelta(seconds=60)
    assert usage.usage_reports_send(now=now) == {}  # not due yet
    assert usage.usage_reports_send(now=now + timedelta(seconds=61)) == {"sent": 1}
    assert UsageReport.objects.get().state == "sent"


@pytest.mark.django_db
def test_a_customer_stripe_does_not_know_is_surfaced_to_support(metered, settings):
    ghost = Customer.objects.create(email="ghost@example.com", stripe_customer_id="cus_doesnotexist000")
    ingest(ghost, ("api_calls", 5, "a", None))
    assert usage.usage_report_run()["failed"] == 1
    report = UsageReport.objects.get()
    assert (report.state, report.error_code) == ("failed", "meter_event_customer_not_found")
    assert AuditEvent.objects.filter(action="usage.report_failed", customer=ghost).exists()
    section = usage_ops_section()
    assert section["reportsFailed"] == 1
    assert "customer Stripe does not know" in section["problems"][0]
    # Support fixes the customer, then retries: the same identifier goes out.
    usage.usage_report_retry(report=report, actor_type="admin", actor="support")
    assert UsageReport.objects.get().state == "retry"


@pytest.mark.django_db
def test_claim_query_count_does_not_grow_with_events(metered, django_assert_max_num_queries):
    buyer = stripe_customer("buyer@example.com")
    ingest(buyer, *[("api_calls", 1, f"a{i}", None) for i in range(5)])
    with django_assert_max_num_queries(10) as few:
        usage.usage_reports_claim()
    ingest(buyer, *[("api_calls", 1, f"b{i}", None) for i in range(500)])
    with django_assert_max_num_queries(len(few.captured_queries)):
        usage.usage_reports_claim()
    assert UsageReport.objects.order_by("-id").first().event_count == 500


@pytest.mark.django_db
def test_report_usage_dry_run_changes_nothing(metered, capsys):
    buyer = stripe_customer("buyer@example.com")
    ingest(buyer, ("api_calls", 5, "a", None), ("exports", 1, "b", None))
    call_command("report_usage", "--dry-run")
    assert "2 unreported events would make 2 reports" in capsys.readouterr().out
    assert not UsageReport.objects.exists()
    call_command("report_usage")
    assert "sent 2" in capsys.readouterr().out
    assert UsageReport.objects.filter(state="sent").count() == 2


@pytest.mark.django_db
def test_report_usage_is_scheduled(settings):
    from billing_console.ops.schedules import SCHEDULES

    cron = next(c for c in SCHEDULES if c.name == "report_usage")
    assert (cron.func, cron.cron) == ("billing_console.invoicing.usage.usage_report_usage_cron", "* * * * *")


@pytest.mark.django_db
def test_ops_summary_shows_the_lags(metered):
    from billing_console.ops.summary import ops_summary

    buyer = stripe_customer("buyer@example.com")
    UsageEvent.objects.create(customer=buyer, meter="api_calls", quantity=1, timestamp=timezone.now(),
                              window_start=0, idempotency_key="old", received_at=timezone.now() - timedelta(minutes=20))
    section = ops_summary()["usage"]
    assert section["ingestionLagSeconds"] >= 20 * 60
    assert any("wait 20 minutes" in p for p in ops_summary()["problems"])
    usage.usage_report_run()
    assert ops_summary()["usage"]["ingestionLagSeconds"] == 0


@pytest.mark.django_db
def test_setup_meters_without_meters_or_stripe(settings, capsys):
    settings.USAGE_METERS = {}
    call_command("setup_meters")
    assert "usage billing is off" in capsys.readouterr().out
    settings.USAGE_METERS = METERS
    with pytest.raises(CommandError, match="Stripe is not configured"):
        call_command("setup_meters")
    assert usage.usage_report_run() == {"claimed": 0, "skipped": "Stripe is not configured"}


@pytest.mark.django_db(transaction=True)
@pytest.mark.skipif(connection.vendor != "postgresql",
                    reason="concurrent report runs need PostgreSQL (SQLite serializes every writer)")
def test_concurrent_report_runs_send_each_window_once(metered):
    import threading

    customers = [stripe_customer(f"c{i}@example.com") for i in range(6)]
    at = timezone.now() - timedelta(minutes=2)
    for n, customer in enumerate(customers):
        ingest(customer, *[("api_calls", 1 + n, f"k{i}", at + timedelta(seconds=i * 30)) for i in range(4)])
    barrier = threading.Barrier(4)
    results = []

    def run():
        from django.db import connection as thread_connection
        try:
            barrier.wait()
            results.append(usage.usage_report_run())
        finally:
            thread_connection.close()

    threads = [threading.Thread(target=run) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    reports = UsageReport.objects.count()
    assert sum(r.get("claimed", 0) for r in results) == reports
    assert sum(r.get("sent", 0) + r.get("duplicate", 0) for r in results) == reports
    assert not UsageEvent.objects.filter(report=None).exists()
    for n, customer in enumerate(customers):
        assert stripe_total(metered, customer, "api_calls", int(at.timestamp()), int(at.timestamp()) + 120) == 4 * (1 + n)
