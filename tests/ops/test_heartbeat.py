"""The task cluster's heartbeat: /health reports it cheaply, /health?deep=1 turns 503 when it is stale."""
from datetime import timedelta

import pytest
from django.utils import timezone

from billing_console.models import Heartbeat, WebhookEvent
from billing_console.ops.heartbeat import heartbeat_cron, heartbeat_record
from billing_console.ops.schedules import SCHEDULES

pytestmark = pytest.mark.django_db


def _event(stripe_id, *, status, received_ago):
    row = WebhookEvent.objects.create(stripe_id=stripe_id, type="invoice.paid", stripe_created=timezone.now(),
                                      payload={}, status=status)
    WebhookEvent.objects.filter(pk=row.pk).update(received_at=timezone.now() - received_ago)


def test_the_heartbeat_cron_is_scheduled_every_minute():
    cron = {c.name: c for c in SCHEDULES}["heartbeat"]
    assert cron.cron == "* * * * *" and cron.func == "billing_console.ops.heartbeat.heartbeat_cron"


def test_each_beat_moves_the_one_row_forward():
    heartbeat_cron()
    first = Heartbeat.objects.get(name="qcluster")
    heartbeat_record(now=first.at + timedelta(seconds=60))
    row = Heartbeat.objects.get(name="qcluster")
    assert Heartbeat.objects.count() == 1 and row.beats == 2 and row.at == first.at + timedelta(seconds=60)


def test_health_names_the_cluster_heartbeat_and_the_oldest_unapplied_event(client, django_assert_max_num_queries):
    heartbeat_record(now=timezone.now() - timedelta(seconds=42))
    _event("evt_done", status=WebhookEvent.Status.PROCESSED, received_ago=timedelta(hours=5))
    _event("evt_waiting", status=WebhookEvent.Status.RECEIVED, received_ago=timedelta(minutes=15))
    _event("evt_failed", status=WebhookEvent.Status.FAILED, received_ago=timedelta(minutes=3))
    with django_assert_max_num_queries(3):  # SELECT 1, the heartbeat, the oldest event: cheap for the LB
        response = client.get("/health")
    assert response.status_code == 200
    body = response.json()
    assert body["cluster"]["state"] == "running"
    assert 42 <= body["cluster"]["heartbeatAgeSeconds"] < 50
    assert 15 * 60 <= body["stripeEvents"]["oldestUnappliedAgeSeconds"] < 15 * 60 + 10


def test_a_stale_heartbeat_keeps_the_cheap_check_up_but_fails_the_deep_one(client, settings):
    settings.HEARTBEAT_STALE_SECONDS = 180
    heartbeat_record(now=timezone.now() - timedelta(seconds=181))
    shallow = client.get("/health")
    assert shallow.status_code == 200 and shallow.json()["cluster"]["state"] == "stale"
    deep = client.get("/health?deep=1")
    assert deep.status_code == 503
    assert deep.json()["ok"] is False and deep.json()["cluster"]["state"] == "stale"


def test_the_deep_check_passes_with_a_fresh_heartbeat_and_fails_with_none(client, settings):
    settings.HEARTBEAT_STALE_SECONDS = 180
    assert client.get("/health?deep=1").status_code == 503  # the cluster never ran a task
    assert client.get("/health?deep=1").json()["cluster"]["state"] == "never"
    heartbeat_record(now=timezone.now() - timedelta(seconds=179))
    response = client.get("/health?deep=1")
    assert response.status_code == 200 and response.json()["cluster"]["state"] == "running"
    assert "stats" in response.json()["cluster"]


def test_the_stale_threshold_is_a_setting(client, settings):
    heartbeat_record(now=timezone.now() - timedelta(seconds=100))
    settings.HEARTBEAT_STALE_SECONDS = 60
    assert client.get("/health?deep=1").status_code == 503
    settings.HEARTBEAT_STALE_SECONDS = 120
    assert client.get("/health?deep=1").status_code == 200


def test_the_dashboard_shows_the_heartbeat_state_not_never_ran(admin_client):
    heartbeat_record(now=timezone.now() - timedelta(seconds=20))
    page = admin_client.get("/admin/").content.decode()
    row = page[page.index(">heartbeat<"):].split("</li>")[0]
    assert "running" in row and "never ran" not in row


def test_health_still_answers_when_the_heartbeat_table_cannot_be_read(client, monkeypatch):
    def broken(**kwargs):
        raise RuntimeError("relation does not exist")

    monkeypatch.setattr("billing_console.ops.views.cluster_state", broken)
    response = client.get("/health")
    assert response.status_code == 200 and response.json()["cluster"]["state"] == "unknown"
    assert client.get("/health?deep=1").status_code == 503
