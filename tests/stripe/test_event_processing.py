"""The worker side of the inbox: one transaction per event, failures leave nothing behind and are
retried with backoff or replayed, concurrent duplicates apply the effect once."""
import json
import threading
from datetime import timedelta

import pytest
from django.core.management import call_command
from django.db import connection
from django.test import Client
from django.utils import timezone

from billing_console.models import AuditEvent, CronRun, Customer, WebhookEvent
from billing_console.stripe import dispatch as event_bus
from billing_console.stripe.inbox import webhook_event_process, webhook_event_store, webhook_events_retry_due
from billing_console.stripe.tasks import stripe_events_retry
from tests.stripe_events import stripe_event
from tests.stripe.conftest import WEBHOOK_URL, signed_headers
from tests.core.factories import SubscribedCustomerFactory
from tests.markers import requires_postgres

pytestmark = pytest.mark.django_db


def subscription_event(customer, *, status="past_due", event_id="evt_sub_updated_1", created=None,
                       event_type="customer.subscription.updated"):
    end = int((timezone.now() + timedelta(days=30)).timestamp())
    return stripe_event(event_type, {
        "id": customer.subscription_id, "status": status, "customer": customer.stripe_customer_id,
        "items": {"object": "list", "data": [{
            "id": "si_1", "object": "subscription_item", "current_period_end": end,
            "current_period_start": end - 30 * 86400, "price": {"id": "price_sandbox_pro", "object": "price"}}]},
    }, event_id=event_id, created=created)


@pytest.fixture
def customer(stripe_settings):
    return SubscribedCustomerFactory(stripe_customer_id="cus_test_processing", subscription_id="sub_test_processing")


@pytest.fixture
def failing_receiver():
    """A later app's receiver that fails after the core's receiver already changed the customer."""
    calls = []

    def explode(event):
        calls.append(event["id"])
        if len(calls) == 1:
            raise RuntimeError(f"boom while handling (key {settings_secret()})")

    with event_bus.receiver_added("customer.subscription.updated", explode, stage=event_bus.Stage.DUNNING):
        yield calls


def settings_secret():
    from django.conf import settings
    return settings.STRIPE_SECRET_KEY


def test_failing_receiver_rolls_back_every_effect_then_replay_applies_once(customer, failing_receiver, post_event):
    response = post_event(subscription_event(customer))
    assert response.status_code == 200  # stored: Stripe must not retry our bug
    row = WebhookEvent.objects.get()
    customer.refresh_from_db()
    assert row.status == WebhookEvent.Status.FAILED and row.attempts == 1
    assert "RuntimeError: boom" in row.last_error and settings_secret() not in row.last_error
    assert row.next_attempt_at > timezone.now()
    assert customer.subscription_status == "active"  # the core receiver's change was rolled back
    assert not AuditEvent.objects.filter(action="customer.subscription_changed").exists()

    call_command("replay_events", "--failed")
    row.refresh_from_db()
    customer.refresh_from_db()
    assert row.status == WebhookEvent.Status.PROCESSED and row.attempts == 2 and row.last_error == ""
    assert customer.subscription_status == "past_due"
    assert AuditEvent.objects.filter(action="customer.subscription_changed").count() == 1


def test_retry_cron_applies_failed_events_once_their_backoff_is_due(customer, failing_receiver, post_event):
    post_event(subscription_event(customer))
    row = WebhookEvent.objects.get()
    assert webhook_events_retry_due() == {"processed": 0, "ignored": 0, "failed": 0, "skipped": 0}  # not due yet
    WebhookEvent.objects.filter(pk=row.pk).update(next_attempt_at=timezone.now() - timedelta(seconds=1))
    stripe_events_retry()
    row.refresh_from_db()
    assert row.status == WebhookEvent.Status.PROCESSED
    run = CronRun.objects.get(name="stripe_events_retry")
    assert run.status == CronRun.Status.OK and run.counts["processed"] == 1


def test_attempts_are_bounded_then_the_event_waits_for_support(customer, stripe_settings):
    stripe_settings.STRIPE_EVENT_MAX_ATTEMPTS = 2

    def always(event):
        raise ValueError("still broken")

    event_bus.registry.add("customer.subscription.updated", always, stage=event_bus.Stage.DUNNING)
    try:
        row, _ = webhook_event_store(event=subscription_event(customer), enqueue=False)
        assert webhook_event_process(webhook_event_id=row.pk) == "failed"
        WebhookEvent.objects.filter(pk=row.pk).update(next_attempt_at=timezone.now())
        assert webhook_event_process(webhook_event_id=row.pk) == "failed"
        row.refresh_from_db()
        assert row.attempts == 2 and row.next_attempt_at is None
        assert webhook_events_retry_due()["failed"] == 0  # no longer retried by the cron
    finally:
        event_bus.registry.remove("customer.subscription.updated", always)


def test_processed_event_is_not_processed_again_unless_replayed(customer):
    row, _ = webhook_event_store(event=subscription_event(customer), enqueue=False)
    assert webhook_event_process(webhook_event_id=row.pk) == "processed"
    assert webhook_event_process(webhook_event_id=row.pk) == "skipped"
    assert webhook_event_process(webhook_event_id=row.pk, force=True) == "processed"
    assert AuditEvent.objects.filter(action="customer.subscription_changed").count() == 1  # idempotent receiver


def test_lost_enqueue_is_picked_up_by_the_retry_cron(customer):
    row, _ = webhook_event_store(event=subscription_event(customer), enqueue=False)
    WebhookEvent.objects.filter(pk=row.pk).update(received_at=timezone.now() - timedelta(minutes=5))
    assert webhook_events_retry_due()["processed"] == 1


def test_unknown_event_type_is_stored_and_ignored_not_failed(stripe_settings):
    event = stripe_event("radar.early_fraud_warning.created", obj={"id": "issfr_1"}, event_id="evt_unknown_1")
    row, _ = webhook_event_store(event=event, enqueue=False)
    assert webhook_event_process(webhook_event_id=row.pk) == "ignored"
    row.refresh_from_db()
    assert row.status == WebhookEvent.Status.IGNORED and row.processed_at is not None and row.mirror == ""


def test_mirror_failure_is_a_warning_that_never_touches_the_applied_event(customer, stripe_settings, monkeypatch):
    from djstripe.models import Subscription as DjSubscription

    from billing_console.stripe.mirror import webhook_events_mirror

    stripe_settings.STRIPE_DJSTRIPE_SYNC = ["*"]
    monkeypatch.setattr(DjSubscription, "sync_from_stripe_data", classmethod(lambda cls, data, api_key=None: 1 / 0))
    row, _ = webhook_event_store(event=subscription_event(customer), enqueue=False)
    assert webhook_event_process(webhook_event_id=row.pk) == "processed"
    row.refresh_from_db()
    customer.refresh_from_db()
    assert row.status == WebhookEvent.Status.PROCESSED and row.mirror == WebhookEvent.Mirror.DUE
    assert customer.subscription_status == "past_due"
    assert webhook_events_mirror() == {"done": 0, "failed": 1, "skipped": 0, "synced": 1}
    row.refresh_from_db()
    assert row.status == WebhookEvent.Status.PROCESSED and row.mirror == WebhookEvent.Mirror.FAILED
    assert row.mirror_error.startswith("ZeroDivisionError")


def test_replay_command_by_id_and_since(customer, capsys):
    row, _ = webhook_event_store(event=subscription_event(customer), enqueue=False)
    call_command("replay_events", "--id", row.stripe_id)
    assert "1 processed" in capsys.readouterr().out
    call_command("replay_events", "--since", "2000-01-01")
    assert "1 processed" in capsys.readouterr().out
    WebhookEvent.objects.filter(pk=row.pk).update(status="failed")
    call_command("replay_events", "--failed", "--since", "2999-01-01")
    assert "0 processed" in capsys.readouterr().out


@requires_postgres
@pytest.mark.django_db(transaction=True)
def test_concurrent_duplicate_deliveries_apply_the_effect_once(stripe_settings):
    """Eight clients deliver the same event at the same moment (PostgreSQL, one connection each)."""
    assert connection.vendor == "postgresql"
    customer = SubscribedCustomerFactory(stripe_customer_id="cus_concurrent", subscription_id="sub_concurrent")
    seen = []
    lock = threading.Lock()

    def count(event):
        with lock:
            seen.append(event["id"])

    event_bus.registry.add("customer.subscription.updated", count, stage=event_bus.Stage.DUNNING)
    body = json.dumps(subscription_event(customer, event_id="evt_concurrent_1")).encode()
    barrier = threading.Barrier(8)
    statuses = []

    def deliver():
        client = Client()
        barrier.wait()
        response = client.post(WEBHOOK_URL, data=body, content_type="application/json", **signed_headers(body))
        with lock:
            statuses.append(response.status_code)
        connection.close()

    threads = [threading.Thread(target=deliver) for _ in range(8)]
    try:
        for t in threads:
            t.start()
        for t in threads:
            t.join(30)
    finally:
        event_bus.registry.remove("customer.subscription.updated", count)
    assert statuses == [200] * 8
    row = WebhookEvent.objects.get(stripe_id="evt_concurrent_1")
    assert row.deliveries == 8 and row.status == WebhookEvent.Status.PROCESSED and row.attempts == 1
    assert seen == ["evt_concurrent_1"]
    assert AuditEvent.objects.filter(action="customer.subscription_changed", customer=customer).count() == 1
    assert Customer.objects.get(pk=customer.pk).subscription_status == "past_due"


@requires_postgres
@pytest.mark.django_db(transaction=True)
def test_concurrent_workers_claim_an_event_once(stripe_settings):
    customer = SubscribedCustomerFactory(stripe_customer_id="cus_workers", subscription_id="sub_workers")
    row, _ = webhook_event_store(event=subscription_event(customer, event_id="evt_workers_1"), enqueue=False)
    barrier = threading.Barrier(6)
    outcomes = []

    def work():
        barrier.wait()
        outcomes.append(webhook_event_process(webhook_event_id=row.pk))
        connection.close()

    threads = [threading.Thread(target=work) for _ in range(6)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(30)
    assert sorted(outcomes) == ["processed"] + ["skipped"] * 5


@pytest.mark.parametrize("mirrored, event_type, obj, wanted", [
    (["product", "price"], "price.updated", "price", True),
    (["product", "price"], "product.created", "product", True),
    (["product", "price"], "customer.updated", "customer", False),
    (["product", "price"], "price_list.updated", "price", False),  # a prefix is a whole dotted word
    (["customer.subscription"], "customer.subscription.deleted", "subscription", True),
    (["customer.subscription"], "customer.updated", "customer", False),
    (["*"], "invoice.paid", "invoice", True),
    (["*"], "setup_intent.created", "setup_intent", False),  # an object dj-stripe's mirror does not keep
    ([], "price.updated", "price", False),
])
def test_djstripe_mirror_takes_only_the_configured_types(stripe_settings, mirrored, event_type, obj, wanted):
    stripe_settings.STRIPE_DJSTRIPE_SYNC = mirrored
    event = stripe_event(event_type, obj={"id": "obj_1", "object": obj}, event_id="evt_mirror_1")
    row, _ = webhook_event_store(event=event, enqueue=False)
    assert webhook_event_process(webhook_event_id=row.pk) in ("processed", "ignored")
    row.refresh_from_db()
    assert row.mirror == (WebhookEvent.Mirror.DUE if wanted else "")
