from datetime import timedelta

import pytest
from django.utils import timezone

from billing_console.admin.dashboard import BAD, OK, Section, Stat, dashboard_sections, register_dashboard_section, unregister_dashboard_section
from billing_console.models import CheckoutAttempt, CronRun, DriftItem, ReconciliationRun, WebhookEvent
from billing_console.ops.schedules import SCHEDULES

pytestmark = pytest.mark.django_db


def _section(request, title):
    return next(s for s in dashboard_sections(request) if s.title.startswith(title))


@pytest.fixture
def req(rf, admin_user):
    request = rf.get("/admin/")
    request.user = admin_user
    return request


def test_admin_index_shows_the_dashboard(admin_client):
    response = admin_client.get("/admin/")
    assert response.status_code == 200
    body = response.content.decode()
    for title in ("Readiness", "Crons", "Stripe events", "Checkouts, last 7 days", "Reconciliation"):
        assert title in body


def test_failed_webhooks_are_counted_and_link_to_the_filtered_list(req):
    for n, status in enumerate(["failed", "failed", "processed"]):
        WebhookEvent.objects.create(stripe_id=f"evt_{n}", type="invoice.paid", stripe_created=timezone.now(),
                                    payload={}, status=status)
    failed = _section(req, "Stripe events").stats[0]
    assert failed.value == 2 and failed.tone == BAD
    # the WebhookEvent admin may not be registered yet: then the number stands without a link
    assert failed.url == "" or "status__exact=failed" in failed.url


def test_abandoned_checkouts_count_only_the_last_seven_days(req):
    recent = CheckoutAttempt.objects.create(plan="pro", price_id="price_x", status="abandoned")
    old = CheckoutAttempt.objects.create(plan="pro", price_id="price_x", status="abandoned")
    CheckoutAttempt.objects.filter(pk=old.pk).update(created_at=timezone.now() - timedelta(days=8))
    CheckoutAttempt.objects.create(plan="pro", price_id="price_x", status="paid")
    stats = {s.label: s for s in _section(req, "Checkouts").stats}
    assert stats["Abandoned"].value == 1 and stats["Paid"].value == 1
    assert recent.pk


def test_cron_rows_show_last_status_and_flag_a_cron_that_never_ran(req):
    name = SCHEDULES[0].name
    CronRun.objects.create(name=name, status=CronRun.Status.ERRORS, finished_at=timezone.now())
    rows = {r.label: r for r in _section(req, "Crons").rows}
    assert rows[name].value == "Errors" and rows[name].tone == BAD
    if len(SCHEDULES) > 1:
        assert rows[SCHEDULES[1].name].value == "not scheduled"  # no django-q2 schedule in this test


def test_a_fresh_install_has_no_late_cron_until_a_first_run_was_due(req, monkeypatch):
    from billing_console.admin import dashboard
    from billing_console.ops.scheduling import schedules_sync

    schedules_sync()
    stats = {s.label: s for s in _section(req, "Crons").stats}
    assert stats["Late or never ran"].value == 0 and stats["Late or never ran"].tone == OK
    rows = {r.label: r for r in _section(req, "Crons").rows}
    assert rows["reconcile"].value == "never ran" and rows["reconcile"].note.startswith("first run due ")

    real_now = timezone.now()
    # An hour and a quarter later the minutely and hourly crons were due; the daily ones may not be yet.
    monkeypatch.setattr(dashboard.timezone, "now", lambda: real_now + timedelta(minutes=76))
    rows = {r.label: r for r in _section(req, "Crons").rows}
    assert "late: first run was due" in rows["stripe_events_retry"].note and rows["stripe_events_retry"].tone == "warn"
    assert "late" in rows["push_deployments"].note
    # Two days later every cron was due at least once.
    monkeypatch.setattr(dashboard.timezone, "now", lambda: real_now + timedelta(days=2))
    stats = {s.label: s for s in _section(req, "Crons").stats}
    assert stats["Late or never ran"].value == len(SCHEDULES)


def test_a_cron_missing_from_django_q_is_flagged_as_not_scheduled(req):
    rows = {r.label: r for r in _section(req, "Crons").rows}
    assert rows[SCHEDULES[0].name].value == "not scheduled" and "setup_schedules" in rows[SCHEDULES[0].name].note


def test_a_cron_whose_next_run_is_long_overdue_is_late(req):
    name = next(c.name for c in SCHEDULES if c.cron.startswith("0 * "))  # hourly
    run = CronRun.objects.create(name=name, status=CronRun.Status.OK, finished_at=timezone.now())
    CronRun.objects.filter(pk=run.pk).update(started_at=timezone.now() - timedelta(hours=3))
    row = {r.label: r for r in _section(req, "Crons").rows}[name]
    assert "late" in row.note


def test_open_drift_and_last_reconciliation(req):
    run = ReconciliationRun.objects.create(status=ReconciliationRun.Status.DRIFT, drift_count=1)
    DriftItem.objects.create(run=run, kind=DriftItem.Kind.REVENUE_LEAK)
    DriftItem.objects.create(run=run, kind=DriftItem.Kind.INVOICE_TOTAL, resolution="resynced")
    stats = {s.label: s for s in _section(req, "Reconciliation").stats}
    assert stats["Open drift items"].value == 1 and stats["Last run"].value == "Drift"


def test_registered_sections_appear_and_a_broken_one_does_not_break_the_page(req, admin_client):
    def good(request):
        return Section("Widgets", [Stat("Spinning", 3, tone=OK)], order=50)

    def broken(request):
        raise RuntimeError("boom")

    register_dashboard_section(good)
    register_dashboard_section(broken)
    try:
        titles = [s.title for s in dashboard_sections(req)]
        assert "Widgets" in titles and "broken" in titles
        assert admin_client.get("/admin/").status_code == 200
    finally:
        unregister_dashboard_section(good)
        unregister_dashboard_section(broken)


def test_dashboard_query_count_does_not_grow_with_rows(req, django_assert_max_num_queries):
    from django.db import connection
    from django.test.utils import CaptureQueriesContext

    dashboard_sections(req)  # warm the readiness cache
    with CaptureQueriesContext(connection) as one:
        dashboard_sections(req)
    for n in range(30):
        WebhookEvent.objects.create(stripe_id=f"evt_many{n}", type="x", stripe_created=timezone.now(), payload={},
                                    status="failed")
        CronRun.objects.create(name=SCHEDULES[0].name, status="ok", finished_at=timezone.now())
    with CaptureQueriesContext(connection) as many:
        dashboard_sections(req)
    assert len(many) == len(one)


def test_every_dashboard_link_opens_its_filtered_list(admin_client, req):
    CheckoutAttempt.objects.create(plan="pro", price_id="price_x", status="abandoned")
    urls = [stat.url for section in dashboard_sections(req) for stat in [*section.stats, *section.rows] if stat.url]
    assert any("checkoutattempt" in u for u in urls) and any("deployment" in u for u in urls)
    for url in urls:
        response = admin_client.get(url)
        assert response.status_code == 200, url  # an unknown filter would redirect with ?e=1


def test_support_user_gets_links_only_where_they_may_look(support_client, support_user, rf):
    request = rf.get("/admin/")
    request.user = support_user
    urls = [stat.url for section in dashboard_sections(request) for stat in section.stats if stat.url]
    assert urls and all(support_client.get(u).status_code == 200 for u in urls)


def test_a_staff_user_without_any_permission_sees_no_numbers_only_a_note(client, django_user_model):
    from tests.stripe.factories import WebhookEventFactory

    WebhookEventFactory(status="failed")
    staff = django_user_model.objects.create_user("bare", "b@example.com", "pw-x-0123456789", is_staff=True)
    client.force_login(staff)
    body = client.get("/admin/").content.decode()
    assert "dash-stat" not in body and "dash-card" not in body and "Failed" not in body
    assert "no permission to see the console" in body


def test_a_staff_user_with_one_console_permission_sees_the_dashboard(client, django_user_model):
    from django.contrib.auth.models import Permission

    staff = django_user_model.objects.create_user("viewer", "v@example.com", "pw-x-0123456789", is_staff=True)
    staff.user_permissions.add(Permission.objects.get(codename="view_customer", content_type__app_label="billing_console"))
    client.force_login(staff)
    assert "dash-card" in client.get("/admin/").content.decode()
