"""alert_check: each problem is announced once when it starts and once when it ends; email and a
Slack-compatible webhook; the ops summary shows the open ones; Sentry events are redacted."""
import json
import threading
from datetime import timedelta
from http.server import BaseHTTPRequestHandler, HTTPServer

import pytest
from django.core import mail
from django.utils import timezone

from billing_console.models import Alert, CronRun, Invoice, WebhookEvent
from billing_console.ops import alerts
from billing_console.ops.alerts import Problem, alerts_check, register_alert_provider
from billing_console.ops.schedules import SCHEDULES
from billing_console.ops.summary import ops_summary

pytestmark = pytest.mark.django_db


class _Hook(BaseHTTPRequestHandler):
    posts: list = []
    status = 200

    def do_POST(self):
        body = self.rfile.read(int(self.headers["Content-Length"]))
        type(self).posts.append({"body": json.loads(body), "type": self.headers["Content-Type"]})
        self.send_response(type(self).status)
        self.end_headers()

    def log_message(self, *args):
        pass


@pytest.fixture
def hook(settings):
    _Hook.posts, _Hook.status = [], 200
    server = HTTPServer(("127.0.0.1", 0), _Hook)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    settings.ALERT_WEBHOOK_URL = f"http://127.0.0.1:{server.server_port}/services/T000/B000/xyz"
    settings.OPS_EMAIL = "ops@example.com"
    yield _Hook
    server.shutdown()


def _failed_event(stripe_id="evt_bad"):
    return WebhookEvent.objects.create(stripe_id=stripe_id, type="invoice.paid", stripe_created=timezone.now(),
                                       payload={}, status=WebhookEvent.Status.FAILED, last_error="boom")


def test_alert_check_is_scheduled_at_least_every_30_minutes():
    cron = {c.name: c for c in SCHEDULES}["alert_check"]
    assert cron.cron == "*/10 * * * *" and cron.func == "billing_console.ops.alerts.alert_check_cron"


def test_a_problem_alerts_once_when_it_starts_and_once_when_it_resolves(hook):
    event = _failed_event()
    first = alerts_check()
    assert first["opened"] == 1 and first["notified"] is True
    assert len(mail.outbox) == 1 and "1 new problem" in mail.outbox[0].subject
    assert "1 Stripe event failed to apply." in mail.outbox[0].body and "Stripe events failed" in mail.outbox[0].body
    assert len(hook.posts) == 1 and hook.posts[0]["type"] == "application/json"
    assert set(hook.posts[0]["body"]) == {"text"} and "failed to apply" in hook.posts[0]["body"]["text"]

    for _ in range(3):  # still failing: nothing new is sent
        assert alerts_check()["opened"] == 0
    assert len(mail.outbox) == 1 and len(hook.posts) == 1
    assert Alert.objects.get().resolved_at is None

    WebhookEvent.objects.filter(pk=event.pk).update(status=WebhookEvent.Status.PROCESSED)
    assert alerts_check()["resolved"] == 1
    assert len(mail.outbox) == 2 and "resolved" in mail.outbox[1].subject
    assert "resolved" in hook.posts[1]["body"]["text"] and len(hook.posts) == 2
    alerts_check()
    assert len(mail.outbox) == 2 and len(hook.posts) == 2
    alert = Alert.objects.get()
    assert alert.resolved_at and alert.opened_notified and alert.resolved_notified

    _failed_event("evt_bad_again")  # the same problem again: a new alert, announced again
    alerts_check()
    assert Alert.objects.count() == 2 and len(mail.outbox) == 3


def test_a_failed_announcement_is_retried_on_the_next_run_not_lost(hook):
    hook.status = 500
    _failed_event()
    assert alerts_check()["notified"] is False
    assert Alert.objects.get().opened_notified is False
    hook.status = 200
    alerts_check()
    assert Alert.objects.get().opened_notified is True
    assert [p["body"]["text"].count("failed to apply") for p in hook.posts] == [1, 1]


def test_without_a_webhook_url_only_email_is_sent(settings):
    settings.OPS_EMAIL = "ops@example.com"
    settings.ALERT_WEBHOOK_URL = ""
    _failed_event()
    assert alerts_check()["notified"] is True and len(mail.outbox) == 1


def test_events_waiting_over_ten_minutes_and_undelivered_invoices(settings):
    row = WebhookEvent.objects.create(stripe_id="evt_wait", type="invoice.paid", stripe_created=timezone.now(), payload={})
    WebhookEvent.objects.filter(pk=row.pk).update(received_at=timezone.now() - timedelta(minutes=9))
    assert not [p for p in alerts.problems_now() if p.key == "stripe_events_waiting"]
    WebhookEvent.objects.filter(pk=row.pk).update(received_at=timezone.now() - timedelta(minutes=11))
    Invoice.objects.create(stripe_id="in_1", stripe_customer_id="cus_1", delivery_status=Invoice.Delivery.FAILED)
    keys = {p.key for p in alerts.problems_now()}
    assert {"stripe_events_waiting", "invoice_delivery_failed"} <= keys


def test_failing_and_late_crons():
    now = timezone.now()
    failing = CronRun.objects.create(name="reconcile", status=CronRun.Status.ERRORS, error_summary="Stripe down")
    late = CronRun.objects.create(name="stripe_events_retry", status=CronRun.Status.OK)
    CronRun.objects.filter(pk=late.pk).update(started_at=now - timedelta(minutes=30))
    fresh = CronRun.objects.create(name="dunning_send", status=CronRun.Status.OK)
    problems = {p.key: p for p in alerts.cron_problems(now)}
    assert "cron_failing:reconcile" in problems and problems["cron_failing:reconcile"].detail == "Stripe down"
    assert "cron_late:stripe_events_retry" in problems  # every minute, silent for 30
    assert "cron_late:dunning_send" not in problems and "cron_late:reconcile" not in problems
    assert fresh.pk and failing.pk


def test_push_and_dunning_failure_spikes(settings):
    from deployments.models import PublishVersion
    from tests.deployments.factories import DeploymentFactory, PublishVersionFactory

    settings.ALERT_PUSH_FAILURES = 3
    deployment = DeploymentFactory()
    for n in range(2):
        PublishVersionFactory(deployment=deployment, number=n + 1, status=PublishVersion.Status.FAILED,
                              completed_at=timezone.now())
    assert "push_failures_spike" not in {p.key for p in alerts.problems_now()}
    PublishVersionFactory(deployment=deployment, number=3, status=PublishVersion.Status.FAILED, completed_at=timezone.now())
    assert "push_failures_spike" in {p.key for p in alerts.problems_now()}


def test_an_unreachable_whatsapp_instance_alerts_through_connection_state(settings):
    from sandbox.whatsapp import FakeEvolution

    fake = FakeEvolution(api_key="evo-key-0123456789", instances=("billing",)).start()
    try:
        settings.EVOLUTION_API_URL, settings.EVOLUTION_API_KEY = fake.url, "evo-key-0123456789"
        settings.EVOLUTION_INSTANCE, settings.EVOLUTION_TIMEOUT_SECONDS = "billing", 2
        assert "whatsapp_unreachable" not in {p.key for p in alerts.problems_now()}
        fake.disconnect("billing")
        [problem] = [p for p in alerts.problems_now() if p.key == "whatsapp_unreachable"]
        assert "close" in problem.title
        settings.EVOLUTION_API_KEY = "wrong-key-0123456789"  # refused: also unreachable for sending
        assert "whatsapp_unreachable" in {p.key for p in alerts.problems_now()}
    finally:
        fake.stop()


def test_a_registered_provider_such_as_disputes_is_checked_and_a_broken_one_is_reported(monkeypatch):
    monkeypatch.setattr(alerts, "_providers", [])
    register_alert_provider(lambda now: [Problem("dispute_open:dp_1", "Dispute dp_1 is open.", runbook="Open dispute")])

    def broken(now):
        raise RuntimeError("nope")

    register_alert_provider(broken)
    keys = {p.key for p in alerts.problems_now()}
    assert "dispute_open:dp_1" in keys and any(k.startswith("alert_check_failed:") for k in keys)


def test_the_ops_summary_shows_the_open_alerts(settings):
    settings.OPS_EMAIL = ""
    _failed_event()
    alerts_check()
    summary = ops_summary()
    assert [a["key"] for a in summary["alerts"]] == ["stripe_events_failed"]
    assert any("Stripe event failed to apply" in p for p in summary["problems"])


def test_sentry_before_send_strips_every_secret_the_log_redaction_knows(settings):
    from billing_console.ops.logging import sentry_before_send

    settings.OPS_SECRET = "ops-secret-value-0123456789"
    settings.CLOUD_MASTER_KEY = "master-key-value-0123456789"
    live_key = "sk_live_" + "ABCDEFGH12345678"  # spelled in two parts so no scanner takes it for a real key
    event = {
        "exception": {"values": [{"value": f"failed with {live_key} and ops-secret-value-0123456789"}]},
        "request": {"headers": {"Authorization": "Bearer abc.def.ghi", "Stripe-Signature": "t=1,v1=abc",
                                "User-Agent": "curl"}, "cookies": {"sessionid": "s3ss10n"},
                    "data": {"email": "a@example.com", "password": "hunter2hunter2"}},
        "extra": {"nested": [{"msg": "key master-key-value-0123456789 whsec_abcdefgh12345678"}]},
    }
    clean = json.dumps(sentry_before_send(event, {}))
    for secret in (live_key, "ops-secret-value-0123456789", "abc.def.ghi", "t=1,v1=abc",
                   "s3ss10n", "hunter2hunter2", "master-key-value-0123456789", "whsec_abcdefgh12345678"):
        assert secret not in clean, secret
    assert "curl" in clean and "a@example.com" in clean


def test_sentry_sends_redacted_events_through_the_real_sdk(settings):
    import sentry_sdk
    from sentry_sdk.transport import Transport

    from billing_console.ops.logging import sentry_before_send

    sent = []

    class Capture(Transport):
        def capture_envelope(self, envelope):
            sent.append(envelope.serialize().decode())

    settings.STRIPE_SECRET_KEY = "sk_test_RealLookingKey0123456789abcd"
    sentry_sdk.init(dsn="https://public@sentry.example.com/1", transport=Capture, before_send=sentry_before_send)
    try:
        try:
            raise RuntimeError(f"Stripe said no to {settings.STRIPE_SECRET_KEY}")
        except RuntimeError as exc:
            sentry_sdk.capture_exception(exc)
        sentry_sdk.flush()
    finally:
        sentry_sdk.init(dsn=None)
    assert sent and "Stripe said no to [redacted]" in sent[0]
    assert "RealLookingKey" not in "".join(sent)


def test_every_alert_names_a_runbook_entry_that_exists():
    import re
    from pathlib import Path

    from django.conf import settings

    root = Path(settings.BASE_DIR)
    runbook = (root / "docs" / "runbook.md").read_text()
    headings = set(re.findall(r"^### (.+)$", runbook, re.MULTILINE))
    named = set()
    for path in ("billing_console/ops/alerts.py", "deployments/alerts.py", "dunning/alerts.py"):
        named |= set(re.findall(r'runbook="([^"]+)"', (root / path).read_text()))
    assert len(named) >= 9 and named <= headings, named - headings
    assert {"Open dispute", "Cluster heartbeat stale"} <= headings
