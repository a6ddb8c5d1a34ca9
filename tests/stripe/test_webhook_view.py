"""The webhook view: only genuine, recent, readable Stripe events are stored, once per event id."""
import json
import time

import pytest

from billing_console.models import WebhookEvent
from sandbox.stripe import sign_payload
from tests.stripe_events import stripe_event
from tests.stripe.conftest import WEBHOOK_SECRET, WEBHOOK_URL

pytestmark = pytest.mark.django_db


def an_event(event_id="evt_test_0001", event_type="product.created", **obj):
    return stripe_event(event_type, {"id": "prod_1", **obj}, event_id=event_id)


def test_signed_unknown_event_is_stored_and_marked_ignored(stripe_settings, post_event):
    response = post_event(an_event())
    assert response.status_code == 200 and response.json() == {"received": True, "duplicate": False}
    row = WebhookEvent.objects.get()
    assert (row.stripe_id, row.type, row.object_id, row.status) == ("evt_test_0001", "product.created", "prod_1",
                                                                     WebhookEvent.Status.IGNORED)
    assert row.attempts == 1 and row.last_error == ""


def test_duplicate_delivery_counts_a_delivery_and_answers_200(stripe_settings, post_event):
    post_event(an_event())
    response = post_event(an_event())
    assert response.status_code == 200 and response.json()["duplicate"] is True
    row = WebhookEvent.objects.get()
    assert row.deliveries == 2 and row.attempts == 1


@pytest.mark.parametrize("headers", [
    {},
    {"HTTP_STRIPE_SIGNATURE": "garbage"},
    {"HTTP_STRIPE_SIGNATURE": "t=123"},
    {"HTTP_STRIPE_SIGNATURE": "t=notanumber,v1=abc"},
])
def test_missing_or_malformed_signature_is_400_and_stores_nothing(stripe_settings, post_event, headers):
    response = post_event(an_event(), headers=headers)
    assert response.status_code == 400
    assert response.json()["error"]["code"] == "WEBHOOK_REJECTED"
    assert not WebhookEvent.objects.exists()


def test_wrong_secret_is_400_and_stores_nothing(stripe_settings, post_event):
    response = post_event(an_event(), secret="whsec_test-someone-elses-secret")
    assert response.status_code == 400 and "signature does not match" in response.json()["error"]["message"]
    assert not WebhookEvent.objects.exists()


def test_body_changed_after_signing_is_400(stripe_settings, client):
    body = json.dumps(an_event()).encode()
    signature = sign_payload(body, WEBHOOK_SECRET)
    tampered = body.replace(b"product.created", b"product.deleted")
    response = client.post(WEBHOOK_URL, data=tampered, content_type="application/json", HTTP_STRIPE_SIGNATURE=signature)
    assert response.status_code == 400
    assert not WebhookEvent.objects.exists()


def test_timestamp_outside_tolerance_is_400(stripe_settings, post_event):
    stale = int(time.time()) - stripe_settings.STRIPE_WEBHOOK_TOLERANCE - 60
    response = post_event(an_event(), timestamp=stale)
    assert response.status_code == 400 and "tolerance" in response.json()["error"]["message"]
    assert not WebhookEvent.objects.exists()


def test_one_matching_signature_among_several_is_accepted(stripe_settings, client, django_capture_on_commit_callbacks):
    """During a secret roll Stripe signs with the old and the new secret: any v1 that matches is enough."""
    body = json.dumps(an_event()).encode()
    now = int(time.time())
    good = sign_payload(body, WEBHOOK_SECRET, now).split("v1=")[1]
    other = sign_payload(body, "whsec_test-previous-secret-0000", now).split("v1=")[1]
    with django_capture_on_commit_callbacks(execute=True):
        response = client.post(WEBHOOK_URL, data=body, content_type="application/json",
                               HTTP_STRIPE_SIGNATURE=f"t={now},v1={other},v1={good}")
    assert response.status_code == 200
    assert WebhookEvent.objects.count() == 1


def test_huge_body_is_413_before_anything_else(stripe_settings, client):
    stripe_settings.STRIPE_WEBHOOK_MAX_BYTES = 1024
    body = json.dumps(an_event(padding="x" * 2048)).encode()
    response = client.post(WEBHOOK_URL, data=body, content_type="application/json",
                           HTTP_STRIPE_SIGNATURE=sign_payload(body, WEBHOOK_SECRET))
    assert response.status_code == 413
    assert not WebhookEvent.objects.exists()


@pytest.mark.parametrize("body", [b"not json", b"[1, 2]", json.dumps({"id": "evt_1", "object": "charge"}).encode(),
                                  json.dumps({"object": "event", "id": "nope", "type": "x", "data": {}}).encode()])
def test_signed_body_that_is_not_an_event_is_400(stripe_settings, post_event, body):
    assert post_event(body).status_code == 400
    assert not WebhookEvent.objects.exists()


def test_no_webhook_secret_configured_answers_503_so_stripe_retries(stripe_settings, post_event):
    stripe_settings.STRIPE_WEBHOOK_SECRET = ""
    response = post_event(an_event())
    assert response.status_code == 503
    assert not WebhookEvent.objects.exists()


def test_get_is_not_allowed(client):
    assert client.get(WEBHOOK_URL).status_code == 405


def test_database_failure_answers_503(stripe_settings, post_event, monkeypatch):
    from django.db import DatabaseError

    def broken(row):
        raise DatabaseError("connection lost")

    monkeypatch.setattr("billing_console.stripe.inbox._insert_once", broken)
    response = post_event(an_event())
    assert response.status_code == 503 and response.json()["error"]["code"] == "STORE_FAILED"


@pytest.fixture
def queued(settings, monkeypatch):
    """django-q2's ORM broker as in production: the task waits in django_q_ormq instead of running inline."""
    from django_q.conf import Conf

    settings.Q_CLUSTER = {**settings.Q_CLUSTER, "sync": False, "orm": "default"}
    monkeypatch.setattr(Conf, "SYNC", False)
    monkeypatch.setattr(Conf, "ORM", "default")


def test_acknowledging_is_one_insert_and_one_drain_task_serves_many_events(stripe_settings, queued, post_event):
    from django.db import connection
    from django.test.utils import CaptureQueriesContext
    from django_q.models import OrmQ

    from billing_console.models import InboxWake
    from billing_console.stripe.inbox import DRAIN_TASK, webhook_events_drain

    with CaptureQueriesContext(connection) as first:
        assert post_event(an_event("evt_queue_1")).status_code == 200
    assert OrmQ.objects.get().task["func"] == DRAIN_TASK  # woken once the event committed
    with CaptureQueriesContext(connection) as second:
        assert post_event(an_event("evt_queue_2")).status_code == 200
        assert post_event(an_event("evt_queue_3")).status_code == 200
    assert OrmQ.objects.count() == 1  # a drain is queued already: no task row per event
    inserts = [q["sql"] for q in second.captured_queries if q["sql"].startswith("INSERT")]
    assert len([sql for sql in inserts if "webhookevent" in sql]) == 2 and not any("django_q" in sql for sql in inserts)
    assert any("django_q_ormq" in q["sql"] for q in first.captured_queries)
    assert set(WebhookEvent.objects.values_list("status", flat=True)) == {WebhookEvent.Status.RECEIVED}

    # product.created has no receiver: each is applied as ignored (stored, never failed).
    assert webhook_events_drain() == {"processed": 0, "ignored": 3, "failed": 0, "released": 0}
    assert set(WebhookEvent.objects.values_list("status", flat=True)) == {WebhookEvent.Status.IGNORED}
    assert not InboxWake.objects.exists()  # the drain started: the next event wakes another
    post_event(an_event("evt_queue_4"))
    assert OrmQ.objects.count() == 2


def test_queue_failure_still_acknowledges_and_the_retry_cron_applies_the_event(stripe_settings, queued, post_event,
                                                                            monkeypatch):
    from datetime import timedelta

    from django.db import OperationalError
    from django.utils import timezone
    from django_q.brokers.orm import ORM
    from django_q.models import OrmQ

    from billing_console.models import InboxWake
    from billing_console.stripe.inbox import WAKE_STALE_AFTER, webhook_events_retry_due

    def down(self, task):
        raise OperationalError("queue table unavailable")

    with monkeypatch.context() as patch:
        patch.setattr(ORM, "enqueue", down)
        response = post_event(an_event("evt_queue_down"))
    assert response.status_code == 200  # stored: the worker side catches up without Stripe's help
    row = WebhookEvent.objects.get()
    assert row.status == WebhookEvent.Status.RECEIVED and not OrmQ.objects.exists()

    # The wake that was lost looks pending until it is stale; then the next event wakes a drain again.
    post_event(an_event("evt_queue_next"))
    assert not OrmQ.objects.exists()
    InboxWake.objects.update(requested_at=timezone.now() - WAKE_STALE_AFTER - timedelta(seconds=1))
    post_event(an_event("evt_queue_later"))
    assert OrmQ.objects.count() == 1

    WebhookEvent.objects.filter(pk=row.pk).update(
        received_at=timezone.now() - timedelta(seconds=stripe_settings.STRIPE_EVENT_ENQUEUE_GRACE_SECONDS + 1))
    assert webhook_events_retry_due()["ignored"] == 1
    row.refresh_from_db()
    assert row.status == WebhookEvent.Status.IGNORED


@pytest.mark.parametrize("obj", [[{"id": "cus_1"}], "cus_1", 42, None])
@pytest.mark.parametrize("event_type", ["customer.subscription.updated", "invoice.paid", "customer.discount.created",
                                        "charge.dispute.created", "product.created"])
def test_a_signed_event_whose_object_is_not_an_object_is_stored_and_never_a_500(stripe_settings, post_event, obj,
                                                                                event_type):
    """Stripe always sends an object there; a signed event that does not is stored once and applied or
    ignored, never a 500 (Stripe would retry it for days) and never a failed event."""
    event = stripe_event(event_type, {"id": "x_1"}, event_id="evt_test_notobject")
    event["data"]["object"] = obj
    response = post_event(event)
    assert response.status_code == 200, response.content
    row = WebhookEvent.objects.get(stripe_id="evt_test_notobject")
    assert row.object_id == "" and row.status in (WebhookEvent.Status.PROCESSED, WebhookEvent.Status.IGNORED), (
        row.status, row.last_error)
