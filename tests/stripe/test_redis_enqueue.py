"""The drain task is sent after the event commits (the inbox row is the queue): a wake that never
reaches Redis (it is down, or restarts and loses its list) must not lose the event. The retry cron
finds events stored but never applied once STRIPE_EVENT_ENQUEUE_GRACE_SECONDS have passed."""
import json
from datetime import timedelta

import pytest
from django.utils import timezone

from billing_console.models import Customer, WebhookEvent
from billing_console.stripe import inbox
from billing_console.stripe.tasks import stripe_events_retry
from tests.stripe.conftest import WEBHOOK_URL, signed_headers
from tests.stripe.test_event_processing import subscription_event
from tests.core.factories import SubscribedCustomerFactory

pytestmark = pytest.mark.django_db


@pytest.fixture
def redis_broker(settings, monkeypatch):
    """Q_CLUSTER as with REDIS_URL set: not the ORM outbox, not sync."""
    from django_q.conf import Conf

    settings.Q_CLUSTER = {k: v for k, v in settings.Q_CLUSTER.items() if k not in ("orm", "sync")} | {
        "redis": "redis://127.0.0.1:6379/10"}
    monkeypatch.setattr(Conf, "SYNC", False)
    return settings


@pytest.mark.parametrize("how", ["raises", "silently_dropped"])
def test_an_event_whose_task_never_reached_the_queue_is_applied_by_the_retry_cron(
        client, stripe_settings, redis_broker, monkeypatch, django_capture_on_commit_callbacks, how):
    customer = SubscribedCustomerFactory(stripe_customer_id="cus_redis_drop", subscription_id="sub_redis_drop",
                                         subscription_status="active")
    sent = []

    def dropped_async_task(func, *args, **kwargs):
        sent.append((func, args))
        if how == "raises":
            raise ConnectionError("Redis is restarting")
        return "task-id-that-redis-lost"  # accepted, then the Redis restart emptied the list

    monkeypatch.setattr("django_q.tasks.async_task", dropped_async_task)
    body = json.dumps(subscription_event(customer, status="past_due", event_id="evt_redis_drop")).encode()
    with django_capture_on_commit_callbacks(execute=True):
        response = client.post(WEBHOOK_URL, data=body, content_type="application/json", **signed_headers(body))
    assert response.status_code == 200  # acknowledged: Stripe will not send it again
    assert sent == [(inbox.DRAIN_TASK, ())]  # the drain's wake, the one task that was lost
    row = WebhookEvent.objects.get(stripe_id="evt_redis_drop")
    assert row.status == WebhookEvent.Status.RECEIVED

    stripe_events_retry()  # within the grace period: a queued task may still be on its way
    assert WebhookEvent.objects.get(pk=row.pk).status == WebhookEvent.Status.RECEIVED

    WebhookEvent.objects.filter(pk=row.pk).update(
        received_at=timezone.now() - timedelta(seconds=stripe_settings.STRIPE_EVENT_ENQUEUE_GRACE_SECONDS + 1))
    stripe_events_retry()
    row.refresh_from_db()
    assert row.status == WebhookEvent.Status.PROCESSED and row.attempts == 1
    assert Customer.objects.get(pk=customer.pk).subscription_status == "past_due"


def test_with_the_redis_broker_the_drain_is_woken_only_after_the_event_commits(
        client, stripe_settings, redis_broker, monkeypatch, django_capture_on_commit_callbacks):
    customer = SubscribedCustomerFactory(stripe_customer_id="cus_redis_commit", subscription_id="sub_redis_commit")
    calls = []
    monkeypatch.setattr("billing_console.stripe.api.webhook_events_wake", lambda: calls.append("wake"))
    body = json.dumps(subscription_event(customer, event_id="evt_redis_commit")).encode()
    with django_capture_on_commit_callbacks(execute=False) as callbacks:
        client.post(WEBHOOK_URL, data=body, content_type="application/json", **signed_headers(body))
    assert calls == [] and len(callbacks) == 1  # nothing sent before the commit
    callbacks[0]()
    assert calls == ["wake"] and WebhookEvent.objects.get(stripe_id="evt_redis_commit").status == "received"
