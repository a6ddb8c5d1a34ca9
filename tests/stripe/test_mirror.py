"""dj-stripe's mirror: built from the event payloads after the console applied them, in its own task;
its failures never touch the applied events; `sync_catalog` fills the price list on a fresh install."""
import pytest
from django.core.management import call_command
from djstripe import models as dj

from billing_console.models import Customer, WebhookEvent
from billing_console.stripe.mirror import mirror_lag_seconds, webhook_events_mirror
from tests.stripe.test_checkout_flow import start_checkout

pytestmark = pytest.mark.django_db

BILLING_TYPES = ["customer", "invoice", "invoiceitem", "price", "product", "payment_method", "charge", "refund",
                 "coupon"]


def test_a_paid_checkout_is_mirrored_from_the_payloads_without_re_reading_them(client, emulator, deliver,
                                                                            stripe_settings, monkeypatch, admin_client):
    from billing_console.stripe import mirror

    stripe_settings.STRIPE_DJSTRIPE_SYNC = BILLING_TYPES
    attempt, _ = start_checkout(client, email="mirror@example.com")
    assert emulator.pay_checkout(attempt.stripe_session_id)["ok"]
    kicks = []
    monkeypatch.setattr(mirror, "mirror_kick", lambda: kicks.append(1))
    deliver(emulator.events)
    assert kicks  # each applied event with a mirrored object kicks the batch on commit
    before = len(emulator.requests)
    webhook_events_mirror()

    customer = Customer.objects.get(email="mirror@example.com")
    assert dj.Customer.objects.get(id=customer.stripe_customer_id).email == "mirror@example.com"
    assert dj.Subscription.objects.get(id=customer.subscription_id).status == "active"
    assert dj.Invoice.objects.filter(customer__id=customer.stripe_customer_id).exists()
    assert dj.PaymentMethod.objects.filter(customer__id=customer.stripe_customer_id).exists()
    due = WebhookEvent.objects.exclude(mirror="")
    assert due.exists() and set(due.values_list("mirror", flat=True)) == {WebhookEvent.Mirror.DONE}
    # No object was read back per event: customers, subscriptions and invoices came from the payloads.
    reads = [r["path"] for r in emulator.requests[before:] if r["method"] == "GET"]
    assert not [p for p in reads if p.startswith(("/v1/customers/", "/v1/subscriptions/", "/v1/invoices/"))], reads
    lag = mirror_lag_seconds()
    assert lag["count"] == due.count() and lag["due"] == 0

    # Support sees the mirrored payment method (and charge, when the sandbox emits charge events) on the
    # customer page.
    page = admin_client.get(f"/admin/billing_console/customer/{customer.pk}/change/").content.decode()
    assert "...4242" in page
    if any(e["type"] == "charge.succeeded" for e in emulator.events):
        charge = dj.Charge.objects.get(customer__id=customer.stripe_customer_id)
        assert charge.id in page and "$9.00" in page


def test_the_mirror_is_off_the_applied_path(client, emulator, stripe_settings, monkeypatch):
    """The console's state is applied even when dj-stripe raises for every object."""
    from billing_console.stripe.inbox import webhook_event_process, webhook_event_store

    stripe_settings.STRIPE_DJSTRIPE_SYNC = ["*"]
    monkeypatch.setattr(dj.Customer, "sync_from_stripe_data", classmethod(lambda cls, data, api_key=None: 1 / 0))
    attempt, _ = start_checkout(client, email="offpath@example.com")
    assert emulator.pay_checkout(attempt.stripe_session_id)["ok"]
    for event in emulator.events:
        row, _ = webhook_event_store(event=event, enqueue=False)
        assert webhook_event_process(webhook_event_id=row.pk) in ("processed", "ignored")
    assert Customer.objects.get(email="offpath@example.com").subscription_status == "active"
    counts = webhook_events_mirror()
    assert counts["failed"] >= 1 and counts["done"] >= 1
    failed = WebhookEvent.objects.get(mirror=WebhookEvent.Mirror.FAILED, type="customer.created")
    assert failed.status in (WebhookEvent.Status.PROCESSED, WebhookEvent.Status.IGNORED) and failed.last_error == ""
    assert failed.mirror_error.startswith("ZeroDivisionError")


def test_a_run_with_nothing_due_does_nothing(stripe_settings):
    assert webhook_events_mirror() == {"done": 0, "failed": 0, "skipped": 0, "synced": 0}


def test_sync_catalog_fills_the_price_list_the_pricing_page_reads(client, emulator, capsys):
    assert not dj.Price.objects.exists()
    assert "$9" not in client.get("/").content.decode() and "9.00" not in client.get("/").content.decode()
    call_command("sync_catalog")
    assert "Mirrored" in capsys.readouterr().out
    assert dj.Price.objects.filter(id="price_sandbox_pro").exists()
    assert dj.Product.objects.filter(id="prod_sandbox_pro").exists()
    page = client.get("/").content.decode()
    assert "9.00" in page or "$9" in page


def test_sync_catalog_without_stripe_says_so(stripe_settings):
    from django.core.management.base import CommandError

    stripe_settings.STRIPE_SECRET_KEY = ""
    with pytest.raises(CommandError, match="Stripe did not answer"):
        call_command("sync_catalog")


def test_events_only_the_mirror_needs_are_ignored_by_the_console_and_still_mirrored(emulator, stripe_settings):
    """customer.created, payment_method.attached and charge.succeeded have no receiver: each is stored, marked
    ignored (never failed) and due for the mirror, which lands them in dj-stripe's tables from the payload."""
    from billing_console.stripe.inbox import webhook_event_process, webhook_event_store
    from tests.stripe_events import stripe_event, stripe_object

    stripe_settings.STRIPE_DJSTRIPE_SYNC = BILLING_TYPES
    at = 1_790_000_000
    customer = stripe_object("customer", {"id": "cus_mirrorOnly1", "email": "only@example.com", "discount": None,
                                          "created": at})
    card = stripe_object("payment_method", {"id": "pm_mirrorOnly1", "customer": customer["id"], "created": at + 1})
    charge = stripe_object("charge", {"id": "ch_mirrorOnly1", "customer": customer["id"], "payment_method": card["id"],
                                      "amount": 900, "amount_captured": 900, "captured": True, "created": at + 2,
                                      "description": "Subscription creation"})
    events = [stripe_event("customer.created", obj=customer, created=at),
              stripe_event("payment_method.attached", obj=card, created=at + 1),
              stripe_event("charge.succeeded", obj=charge, created=at + 2)]
    for event in events:
        row, _ = webhook_event_store(event=event, enqueue=False)
        assert webhook_event_process(webhook_event_id=row.pk) == "ignored"
    rows = WebhookEvent.objects.filter(stripe_id__in=[e["id"] for e in events])
    assert {(r.status, r.mirror, r.last_error) for r in rows} == {(WebhookEvent.Status.IGNORED, WebhookEvent.Mirror.DUE, "")}
    before = len(emulator.requests)

    assert webhook_events_mirror() == {"done": 3, "failed": 0, "skipped": 0, "synced": 3}
    assert dj.Customer.objects.get(id="cus_mirrorOnly1").email == "only@example.com"
    mirrored_card = dj.PaymentMethod.objects.get(id="pm_mirrorOnly1")
    assert mirrored_card.customer_id == "cus_mirrorOnly1" and mirrored_card.stripe_data["card"]["last4"] == "4242"
    mirrored_charge = dj.Charge.objects.get(id="ch_mirrorOnly1")
    assert (mirrored_charge.customer_id, mirrored_charge.payment_method_id, mirrored_charge.status) == (
        "cus_mirrorOnly1", "pm_mirrorOnly1", "succeeded")
    assert mirrored_charge.amount == 9  # dj-stripe keeps a charge's amount in major units
    assert set(rows.values_list("mirror", "status")) == {(WebhookEvent.Mirror.DONE, WebhookEvent.Status.IGNORED)}
    # Built from the payloads: none of the three objects was read back from Stripe.
    reads = [r["path"] for r in emulator.requests[before:] if r["method"] == "GET"]
    assert not [p for p in reads if p.startswith(("/v1/customers", "/v1/payment_methods", "/v1/charges"))], reads


def test_a_mirror_only_event_is_ignored_and_not_mirrored_when_the_mirror_is_off(stripe_settings):
    from billing_console.stripe.inbox import webhook_event_process, webhook_event_store
    from tests.stripe_events import stripe_event, stripe_object

    stripe_settings.STRIPE_DJSTRIPE_SYNC = ["invoice"]
    event = stripe_event("charge.succeeded", obj=stripe_object("charge", {"id": "ch_notMirrored1"}))
    row, _ = webhook_event_store(event=event, enqueue=False)
    assert webhook_event_process(webhook_event_id=row.pk) == "ignored"
    row.refresh_from_db()
    assert row.status == WebhookEvent.Status.IGNORED and row.mirror == ""


def test_a_burst_of_updates_to_one_object_is_one_sync_of_its_newest_state(emulator, stripe_settings, monkeypatch):
    """Five customer.updated for one customer and one for another: two syncs, every event marked done, and
    the mirror holds each customer's newest payload; the first-seen object is synced first."""
    from billing_console.stripe import mirror
    from billing_console.stripe.inbox import webhook_event_process, webhook_event_store
    from tests.stripe_events import stripe_event, stripe_object

    stripe_settings.STRIPE_DJSTRIPE_SYNC = BILLING_TYPES
    at = 1_790_000_000
    events = [stripe_event("customer.updated", created=at + n,
                           obj=stripe_object("customer", {"id": "cus_burst1", "email": f"v{n}@example.com",
                                                          "discount": None, "created": at}))
              for n in range(5)]
    events.insert(2, stripe_event("customer.updated", created=at + 1, obj=stripe_object(
        "customer", {"id": "cus_burst2", "email": "other@example.com", "discount": None, "created": at})))
    for event in events:
        row, _ = webhook_event_store(event=event, enqueue=False)
        webhook_event_process(webhook_event_id=row.pk)
    synced = []
    real = mirror.event_mirror
    monkeypatch.setattr(mirror, "event_mirror", lambda payload: synced.append(payload["id"]) or real(payload))

    assert webhook_events_mirror() == {"done": 6, "failed": 0, "skipped": 0, "synced": 2}
    assert synced == [events[-1]["id"], events[2]["id"]]  # cus_burst1 first seen first, at its newest payload
    assert dj.Customer.objects.get(id="cus_burst1").email == "v4@example.com"
    assert dj.Customer.objects.get(id="cus_burst2").email == "other@example.com"
    rows = WebhookEvent.objects.filter(stripe_id__in=[e["id"] for e in events])
    assert set(rows.values_list("mirror", flat=True)) == {WebhookEvent.Mirror.DONE}
    assert all(r.mirrored_at is not None for r in rows)


def test_a_run_stops_when_its_time_is_up_and_kicks_the_next(emulator, stripe_settings, monkeypatch):
    """A backlog is worked in runs that each end well inside django-q2's timeout (a run killed by the
    timeout left the running flag for ten minutes and the mirror stalled), each kicking the next."""
    from billing_console.stripe import mirror
    from billing_console.stripe.inbox import webhook_event_process, webhook_event_store
    from tests.stripe_events import stripe_event, stripe_object

    stripe_settings.STRIPE_DJSTRIPE_SYNC = BILLING_TYPES
    for n in range(3):
        event = stripe_event("customer.updated", created=1_790_000_000 + n, obj=stripe_object(
            "customer", {"id": f"cus_budget{n}", "email": f"b{n}@example.com", "discount": None}))
        row, _ = webhook_event_store(event=event, enqueue=False)
        webhook_event_process(webhook_event_id=row.pk)
    clock = iter([0.0, 0.0, 10_000.0])  # started, first check, the check after one batch
    monkeypatch.setattr(mirror.time, "monotonic", lambda: next(clock, 10_000.0))
    kicks = []
    monkeypatch.setattr(mirror, "mirror_kick", lambda: kicks.append(1))

    assert mirror.webhook_events_mirror(limit=2) == {"done": 2, "failed": 0, "skipped": 0, "synced": 2}
    assert kicks == [1]
    assert WebhookEvent.objects.filter(mirror=WebhookEvent.Mirror.DUE).count() == 1


def test_the_mirror_gives_way_to_a_backlog_and_the_drain_brings_it_back(emulator, stripe_settings, monkeypatch):
    """With a burst waiting for the drain (>= BACKLOG_DEFERS_AT received events) a mirror run does nothing
    and leaves its kick flag set, so the burst's applies enqueue no more mirror tasks; the drain, once its
    queue is empty, kicks the mirror, which then catches up."""
    from django.core.cache import cache

    from billing_console.stripe import mirror
    from billing_console.stripe.inbox import webhook_event_process, webhook_event_store, webhook_events_drain
    from tests.stripe_events import stripe_event, stripe_object

    stripe_settings.STRIPE_DJSTRIPE_SYNC = BILLING_TYPES
    at = 1_790_000_000
    first = stripe_event("customer.updated", created=at, obj=stripe_object(
        "customer", {"id": "cus_backlog0", "email": "first@example.com", "discount": None, "created": at}))
    row, _ = webhook_event_store(event=first, enqueue=False)
    webhook_event_process(webhook_event_id=row.pk)
    for n in range(1, mirror.BACKLOG_DEFERS_AT + 1):
        webhook_event_store(event=stripe_event("customer.updated", created=at + n, obj=stripe_object(
            "customer", {"id": f"cus_backlog{n}", "email": f"b{n}@example.com", "discount": None, "created": at})),
            enqueue=False)

    assert mirror.webhook_events_mirror()["deferred"] == 1
    assert WebhookEvent.objects.get(pk=row.pk).mirror == WebhookEvent.Mirror.DUE
    assert not dj.Customer.objects.filter(id="cus_backlog0").exists()
    assert cache.get(mirror.DEFERRED_KEY)

    kicks = []
    monkeypatch.setattr(mirror, "mirror_kick", lambda force=False: kicks.append(force) or cache.delete(
        mirror.DEFERRED_KEY))  # as the real one does; the task itself is run below
    counts = webhook_events_drain()
    assert counts["processed"] == mirror.BACKLOG_DEFERS_AT and kicks == [True]
    assert not mirror.apply_backlog()
    assert mirror.webhook_events_mirror()["done"] == mirror.BACKLOG_DEFERS_AT + 1
    assert dj.Customer.objects.get(id="cus_backlog0").email == "first@example.com"


def test_a_trickle_of_arrivals_does_not_hold_the_mirror_back(emulator, stripe_settings):
    from billing_console.stripe import mirror
    from billing_console.stripe.inbox import webhook_event_process, webhook_event_store
    from tests.stripe_events import stripe_event, stripe_object

    stripe_settings.STRIPE_DJSTRIPE_SYNC = BILLING_TYPES
    at = 1_790_000_000
    row, _ = webhook_event_store(event=stripe_event("customer.updated", created=at, obj=stripe_object(
        "customer", {"id": "cus_trickle0", "email": "t@example.com", "discount": None, "created": at})), enqueue=False)
    webhook_event_process(webhook_event_id=row.pk)
    for n in range(1, mirror.BACKLOG_DEFERS_AT):  # one fewer than a burst
        webhook_event_store(event=stripe_event("customer.updated", created=at + n, obj=stripe_object(
            "customer", {"id": f"cus_trickle{n}", "discount": None, "created": at})), enqueue=False)
    assert mirror.webhook_events_mirror() == {"done": 1, "failed": 0, "skipped": 0, "synced": 1}
