import json
from datetime import timedelta

import pytest
from django.core import mail
from django.utils import timezone

from billing_console.invoicing.tasks import daily_health_report
from billing_console.models import CheckoutAttempt, CronRun, Invoice, InvoiceEvent, ReconciliationRun
from billing_console.ops import summary as ops
from tests.invoicing.factories import InvoiceFactory

pytestmark = pytest.mark.django_db
SECRET = "0ps-s3cret-for-tests-123456"


@pytest.fixture
def ops_secret(settings):
    settings.OPS_SECRET = SECRET
    return SECRET


@pytest.fixture
def sections():
    with ops.ops_sections_restored():
        yield


def test_unset_secret_answers_503(client):
    response = client.get("/api/ops/summary", HTTP_AUTHORIZATION="Bearer anything")
    assert response.status_code == 503 and "OPS_SECRET" in response.json()["error"]["message"]


@pytest.mark.parametrize("header", [None, "", "Bearer", "Bearer wrong-secret", f"Basic {SECRET}", f"Bearer {SECRET}x",
                                    "Bearer ünïcode"])
def test_missing_or_wrong_bearer_answers_401(client, ops_secret, header):
    kwargs = {} if header is None else {"HTTP_AUTHORIZATION": header}
    response = client.get("/api/ops/summary", **kwargs)
    assert response.status_code == 401 and SECRET not in response.content.decode()


def test_only_get_is_allowed(client, ops_secret):
    assert client.post("/api/ops/summary", HTTP_AUTHORIZATION=f"Bearer {SECRET}").status_code == 405


def test_right_bearer_gets_the_summary(client, ops_secret, sections):
    now = timezone.now()
    for status in ["pending", "pending", "paid", "abandoned"]:
        CheckoutAttempt.objects.create(plan="pro", price_id="price_1", status=status)
    CheckoutAttempt.objects.create(plan="pro", price_id="price_1", status="abandoned", follow_up_status="sent",
                                   follow_up_sent_at=now)
    CheckoutAttempt.objects.create(plan="pro", price_id="price_1", status="abandoned", follow_up_status="failed")
    invoice = InvoiceFactory(delivery_status="failed")
    InvoiceEvent.objects.create(invoice=invoice, kind="email_sent")
    InvoiceEvent.objects.create(invoice=invoice, kind="email_failed")
    old = InvoiceEvent.objects.create(invoice=invoice, kind="email_sent")
    InvoiceEvent.objects.filter(pk=old.pk).update(at=now - timedelta(hours=25))
    ReconciliationRun.objects.create(status="drift", drift_count=3, finished_at=now, checked={"invoices": 10})
    CronRun.objects.create(name="reconcile", status="ok", finished_at=now)
    CronRun.objects.create(name="push_deployments", status="errors", finished_at=now)
    ops.register_ops_section("dunning", lambda: {"openCasesByStep": {"SOFT_D+1": 2}, "emails24h": {"sent": 4, "failed": 1},
                                                 "problems": ["2 dunning steps failed."]})
    ops.register_ops_section("deployments", lambda: {"byStatus": {"active": 5, "errored": 1}})

    response = client.get("/api/ops/summary", HTTP_AUTHORIZATION=f"Bearer {SECRET}")
    assert response.status_code == 200 and response["Cache-Control"].startswith("max-age=0")
    body = response.json()
    assert body["checkout"] | {"followUp": None} == {"windowDays": 7, "pending": 2, "paid": 1, "abandoned": 3, "followUp": None}
    assert body["checkout"]["followUp"] == {"sent": 1, "failed": 1, "queued": 0}
    assert body["emails24h"]["sent"] == 1 + 1 + 4 and body["emails24h"]["failed"] == 1 + 1 + 1
    assert body["emails24h"]["bySource"]["dunning"] == {"sent": 4, "failed": 1}
    assert body["dunning"] == {"openCasesByStep": {"SOFT_D+1": 2}}
    assert body["deployments"] == {"byStatus": {"active": 5, "errored": 1}}
    assert body["invoices"]["deliveryFailed"] == 1
    assert body["reconciliation"]["lastRun"]["status"] == "drift" and body["reconciliation"]["lastRun"]["driftCount"] == 3
    crons = {c["name"]: c["lastStatus"] for c in body["crons"]}
    assert crons["reconcile"] == "ok" and crons["push_deployments"] == "errors" and crons["daily_health_report"] is None
    assert body["ok"] is False and "2 dunning steps failed." in body["problems"]
    assert any("push_deployments" in p for p in body["problems"])
    assert SECRET not in json.dumps(body)


def test_a_broken_section_is_reported_not_fatal(sections):
    def broken():
        raise RuntimeError("boom")

    ops.register_ops_section("deployments", broken)
    summary = ops.ops_summary()
    assert summary["deployments"] == {"error": "RuntimeError: boom"} and "Ops section deployments failed." in summary["problems"]


def test_core_section_names_cannot_be_taken(sections):
    with pytest.raises(ValueError):
        ops.register_ops_section("crons", dict)


def test_summary_query_count_is_fixed(django_assert_max_num_queries):
    for n in range(30):
        CronRun.objects.create(name=f"cron{n % 5}", status="ok")
    # The core's own statements, plus at most one per section an app registered (deployments, dunning).
    with django_assert_max_num_queries(9 + len(ops.ops_section_names())):  # 9: the core's sections, open alerts included
        ops.ops_summary()


def test_daily_report_emails_ops_when_something_is_wrong(settings):
    settings.OPS_EMAIL = "ops@example.com"
    InvoiceFactory(delivery_status=Invoice.Delivery.FAILED)
    daily_health_report()
    (message,) = mail.outbox
    assert message.to == ["ops@example.com"] and "could not be delivered" in message.body
    assert "never run" in message.body
    run = CronRun.objects.get(name="daily_health_report")
    assert run.status == "ok" and run.counts["emailed"] == 1


def test_daily_report_stays_quiet_when_all_is_well(settings):
    settings.OPS_EMAIL = "ops@example.com"
    ReconciliationRun.objects.create(status="clean", finished_at=timezone.now())
    daily_health_report()
    assert mail.outbox == [] and CronRun.objects.get(name="daily_health_report").counts == {"problems": 0, "emailed": 0}
