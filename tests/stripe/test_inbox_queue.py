"""The inbox as the queue: a drain claims received events in batches, oldest Stripe time first, applies
each in its own transaction (one bad event never blocks the rest), concurrent drains never take the same
event, and applied events past the retention are pruned in batches."""
import threading
import time
from datetime import timedelta

import pytest
from django.core.management import CommandError, call_command
from django.db import connection, transaction
from django.utils import timezone

from billing_console.models import CronRun, Customer, InboxWake, WebhookEvent
from billing_console.ops.schedules import SCHEDULES
from billing_console.stripe import dispatch as event_bus
from billing_console.stripe import inbox
from billing_console.stripe.inbox import (webhook_events_claim, webhook_events_drain, webhook_events_prune,
                                          webhook_events_wake, webhook_event_store)
from billing_console.stripe.tasks import stripe_events_prune
from tests.core.factories import SubscribedCustomerFactory
from tests.markers import requires_postgres
from tests.stripe.test_event_processing import subscription_event
from tests.stripe_events import stripe_event

pytestmark = pytest.mark.django_db
NOW = int(time.time())


def stored(event: dict) -> WebhookEvent:
    return webhook_event_store(event=event, enqueue=False)[0]


@pytest.fixture
def applied():
    """Every event id a (DUNNING-stage) receiver of customer.subscription.updated saw, in order."""
    seen: list[str] = []
    lock = threading.Lock()

    def record(event):
        with lock:
            seen.append(event["id"])

    with event_bus.receiver_added("customer.subscription.updated", record, stage=event_bus.Stage.DUNNING):
        yield seen


def test_a_drain_applies_its_batch_in_stripe_created_order_whatever_the_arrival(stripe_settings, applied):
    customer = SubscribedCustomerFactory(stripe_customer_id="cus_order", subscription_id="sub_order")
    # Delivered newest first; per object the newest state must be the one that stays.
    stored(subscription_event(customer, status="canceled", event_id="evt_order_3", created=NOW - 10))
    stored(subscription_event(customer, status="past_due", event_id="evt_order_1", created=NOW - 30))
    stored(subscription_event(customer, status="active", event_id="evt_order_2", created=NOW - 20))
    assert webhook_events_drain(batch_size=10) == {"processed": 3, "ignored": 0, "failed": 0, "released": 0}
    assert applied == ["evt_order_1", "evt_order_2", "evt_order_3"]
    customer.refresh_from_db()
    assert customer.subscription_status == "canceled"


def test_one_bad_event_in_a_batch_does_not_block_the_others(stripe_settings, applied):
    customers = [SubscribedCustomerFactory(stripe_customer_id=f"cus_bad{i}", subscription_id=f"sub_bad{i}")
                 for i in range(3)]
    for i, customer in enumerate(customers):
        stored(subscription_event(customer, status="past_due", event_id=f"evt_bad_{i}", created=NOW - 30 + i))

    def explode(event):
        if event["id"] == "evt_bad_1":
            raise RuntimeError("this one is broken")

    with event_bus.receiver_added("customer.subscription.updated", explode, stage=event_bus.Stage.LICENSING):
        assert webhook_events_drain(batch_size=10) == {"processed": 2, "ignored": 0, "failed": 1, "released": 0}
    rows = {row.stripe_id: row for row in WebhookEvent.objects.all()}
    assert rows["evt_bad_1"].status == WebhookEvent.Status.FAILED and "this one is broken" in rows["evt_bad_1"].last_error
    assert rows["evt_bad_1"].next_attempt_at > timezone.now()  # retried by the cron after its backoff
    assert {rows["evt_bad_0"].status, rows["evt_bad_2"].status} == {WebhookEvent.Status.PROCESSED}
    statuses = [Customer.objects.get(pk=c.pk).subscription_status for c in customers]
    assert statuses == ["past_due", "active", "past_due"]  # the bad event's effects were rolled back alone


def test_a_drain_takes_batch_after_batch_until_the_queue_is_empty(stripe_settings, applied, monkeypatch):
    woken = []
    monkeypatch.setattr(inbox, "webhook_events_wake", lambda: woken.append(1))
    for i in range(7):
        stored(stripe_event("customer.subscription.updated", obj={"id": f"sub_none{i}"}, event_id=f"evt_many_{i}",
                            created=NOW - 100 + i))
    claims = []
    real_claim = inbox.webhook_events_claim

    def counting(*, limit):
        rows, lease = real_claim(limit=limit)
        claims.append(len(rows))
        return rows, lease

    inbox.webhook_events_claim = counting
    try:
        counts = webhook_events_drain(batch_size=3)
    finally:
        inbox.webhook_events_claim = real_claim
    assert claims == [3, 3, 1, 0]
    assert woken == [1, 1]  # each full batch woke one more drain for the free workers
    assert counts["processed"] + counts["failed"] == 7
    assert applied == [f"evt_many_{i}" for i in range(7)]
    assert not WebhookEvent.objects.filter(status=WebhookEvent.Status.RECEIVED).exists()


def test_a_claim_takes_only_received_events_and_sets_their_lease(stripe_settings):
    fresh = stored(stripe_event("price.updated", obj={"id": "price_1"}, event_id="evt_claim_1", created=NOW - 5))
    failed = stored(stripe_event("price.updated", obj={"id": "price_2"}, event_id="evt_claim_2", created=NOW - 9))
    WebhookEvent.objects.filter(pk=failed.pk).update(status=WebhookEvent.Status.FAILED,
                                                     next_attempt_at=timezone.now() - timedelta(seconds=1))
    rows, lease_until = webhook_events_claim(limit=10)
    assert [row.pk for row in rows] == [fresh.pk]
    fresh.refresh_from_db()
    assert fresh.status == WebhookEvent.Status.PROCESSING and fresh.next_attempt_at == lease_until
    assert lease_until > timezone.now() + timedelta(seconds=stripe_settings.STRIPE_EVENT_PROCESSING_LEASE_SECONDS - 5)
    assert webhook_events_claim(limit=10)[0] == []  # a failed event waits for the retry cron, not the drain


def test_a_drain_gives_back_what_it_cannot_apply_within_its_lease(stripe_settings, monkeypatch):
    clock = [1000.0]
    monkeypatch.setattr(inbox.time, "monotonic", lambda: clock[0])
    woken = []
    monkeypatch.setattr(inbox, "webhook_events_wake", lambda: woken.append(1))

    def slow(event):
        clock[0] += 3600  # this event took an hour

    for i in range(3):
        stored(stripe_event("price.updated", obj={"id": f"price_{i}"}, event_id=f"evt_slow_{i}", created=NOW - 10 + i))
    with event_bus.receiver_added("price.updated", slow, stage=event_bus.Stage.CORE):
        assert webhook_events_drain(batch_size=10) == {"processed": 1, "ignored": 0, "failed": 0, "released": 2}
    statuses = dict(WebhookEvent.objects.values_list("stripe_id", "status"))
    assert statuses == {"evt_slow_0": "processed", "evt_slow_1": "received", "evt_slow_2": "received"}
    assert not WebhookEvent.objects.filter(status="received", next_attempt_at__isnull=False).exists()
    assert woken == [1]  # work is left: another drain is woken


def test_one_wake_until_a_drain_starts_or_the_wake_is_stale(stripe_settings, monkeypatch):
    enqueued = []
    monkeypatch.setattr("django_q.tasks.async_task", lambda func, *args, **kwargs: enqueued.append(func))
    assert webhook_events_wake() is True
    assert webhook_events_wake() is False
    assert enqueued == [inbox.DRAIN_TASK]
    webhook_events_drain()
    assert not InboxWake.objects.exists()
    assert webhook_events_wake() is True
    InboxWake.objects.update(requested_at=timezone.now() - inbox.WAKE_STALE_AFTER - timedelta(seconds=1))
    assert webhook_events_wake() is True  # the queued drain was lost
    assert len(enqueued) == 3


@requires_postgres
@pytest.mark.django_db(transaction=True)
def test_a_claim_skips_the_rows_another_worker_holds(stripe_settings):
    for i in range(10):
        stored(stripe_event("price.updated", obj={"id": f"price_{i}"}, event_id=f"evt_skip_{i}", created=NOW - 100 + i))
    held, release, got = threading.Event(), threading.Event(), []

    def other_worker():
        with transaction.atomic():
            got.extend(WebhookEvent.objects.filter(status="received").order_by("stripe_created", "pk")
                       .select_for_update().values_list("pk", flat=True)[:4])
            held.set()
            release.wait(30)
        connection.close()

    thread = threading.Thread(target=other_worker)
    thread.start()
    try:
        assert held.wait(30)
        started = time.monotonic()
        rows, _ = webhook_events_claim(limit=4)
        assert time.monotonic() - started < 5  # never waits for the other worker's locks
    finally:
        release.set()
        thread.join(30)
    assert len(got) == 4 and [row.pk for row in rows] and not {row.pk for row in rows} & set(got)
    assert [row.stripe_id for row in rows] == [f"evt_skip_{i}" for i in range(4, 8)]


@requires_postgres
@pytest.mark.django_db(transaction=True)
def test_concurrent_drains_never_apply_the_same_event(stripe_settings, monkeypatch):
    monkeypatch.setattr(inbox, "webhook_events_wake", lambda: False)  # exactly these four drains
    n = 120
    for i in range(n):
        stored(stripe_event("price.updated", obj={"id": f"price_{i}"}, event_id=f"evt_race_{i:03d}",
                            created=NOW - 1000 + i))
    seen: list[tuple[str, int]] = []
    lock = threading.Lock()

    def record(event):
        with lock:
            seen.append((event["id"], threading.get_ident()))

    barrier = threading.Barrier(4)

    def drain():
        barrier.wait()
        webhook_events_drain(batch_size=5)
        connection.close()

    with event_bus.receiver_added("price.updated", record, stage=event_bus.Stage.CORE):
        threads = [threading.Thread(target=drain) for _ in range(4)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(60)
    ids = [event_id for event_id, _ in seen]
    assert len(ids) == n and len(set(ids)) == n  # every event once, none twice
    assert WebhookEvent.objects.filter(status=WebhookEvent.Status.PROCESSED, attempts=1).count() == n


def old(stripe_id: str, status: str, days: int) -> WebhookEvent:
    row = stored(stripe_event("price.updated", obj={"id": "price_old"}, event_id=stripe_id,
                              created=int((timezone.now() - timedelta(days=days)).timestamp())))
    WebhookEvent.objects.filter(pk=row.pk).update(status=status)
    return row


def test_prune_deletes_only_applied_events_past_the_retention_in_batches(stripe_settings):
    for i in range(5):
        old(f"evt_old_done_{i}", WebhookEvent.Status.PROCESSED, days=100)
    old("evt_recent_done", WebhookEvent.Status.PROCESSED, days=10)
    old("evt_old_failed", WebhookEvent.Status.FAILED, days=100)
    old("evt_old_received", WebhookEvent.Status.RECEIVED, days=100)
    old("evt_old_processing", WebhookEvent.Status.PROCESSING, days=100)
    assert webhook_events_prune(older_than_days=90, batch_size=2) == 5
    assert sorted(WebhookEvent.objects.values_list("stripe_id", flat=True)) == [
        "evt_old_failed", "evt_old_processing", "evt_old_received", "evt_recent_done"]


def test_prune_command_and_cron(stripe_settings, capsys):
    old("evt_cmd_1", WebhookEvent.Status.PROCESSED, days=40)
    old("evt_cmd_2", WebhookEvent.Status.PROCESSED, days=20)
    call_command("prune_webhook_events", "--older-than", "30")
    assert "1 applied event older than 30 days deleted." in capsys.readouterr().out
    with pytest.raises(CommandError, match="at least one day"):
        call_command("prune_webhook_events", "--older-than", "-1")
    with pytest.raises(CommandError, match="batch-size"):
        call_command("prune_webhook_events", "--batch-size", "0")

    stripe_settings.STRIPE_EVENT_RETENTION_DAYS = 0  # retention off: the cron keeps everything
    stripe_events_prune()
    assert WebhookEvent.objects.filter(stripe_id="evt_cmd_2").exists()
    with pytest.raises(CommandError, match="Retention is off"):
        call_command("prune_webhook_events")
    stripe_settings.STRIPE_EVENT_RETENTION_DAYS = 10
    CronRun.objects.all().delete()
    stripe_events_prune()
    assert not WebhookEvent.objects.exists()
    assert CronRun.objects.get(name="stripe_events_prune").counts == {"deleted": 1}
    assert any(cron.name == "stripe_events_prune" for cron in SCHEDULES)
