"""No Stripe call while a transaction holds row locks: the worker reads Stripe first (the event's
preparers), then applies the event in one transaction. The project conftest's guard fails any test
whose code calls Stripe inside a transaction; these tests prove the guard and the webhook paths."""
import pytest
from django.db import transaction
from django.utils import timezone

from billing_console.models import Customer
from billing_console.stripe import gateway
from billing_console.stripe.inbox import webhook_event_process, webhook_event_store
from conftest import open_transactions
from tests.stripe.test_checkout_flow import start_checkout
from tests.stripe_events import stripe_event

pytestmark = pytest.mark.django_db


@pytest.fixture
def stripe_reads(monkeypatch):
    """Every Stripe read, with the transactions open when it was made."""
    reads = []
    for name in ("subscription_retrieve", "customer_retrieve"):
        real = getattr(gateway, name)

        def spy(object_id, _real=real, _name=name, **kwargs):
            reads.append((_name, object_id, len(open_transactions())))
            return _real(object_id, **kwargs)

        monkeypatch.setattr(gateway, name, spy)
    return reads


def test_the_guard_fails_a_stripe_call_made_inside_a_transaction(emulator):
    with transaction.atomic(), pytest.raises(AssertionError, match="inside a transaction"):
        gateway.subscription_retrieve("sub_anything")


def test_checkout_completed_that_only_names_its_subscription_reads_it_before_the_transaction(
        client, emulator, deliver, stripe_reads):
    attempt, _ = start_checkout(client, email="grace@example.com")
    result = emulator.pay_checkout(attempt.stripe_session_id, card="4242 4242 4242 4242", name="Grace Hopper")
    completed = [e for e in emulator.events if e["type"] == "checkout.session.completed"]
    assert isinstance(completed[0]["data"]["object"]["subscription"], str)  # named, not expanded

    deliver(completed)  # alone: no subscription event has linked the customer yet

    customer = Customer.objects.get(email="grace@example.com")
    assert (customer.subscription_id, customer.subscription_status) == (result["subscription"], "active")
    assert stripe_reads == [("subscription_retrieve", result["subscription"], 0)]


def test_customer_updated_within_the_clock_skew_rereads_the_customer_before_the_transaction(
        emulator, stripe_settings, stripe_reads):
    stripe_customer = gateway.client().v1.customers.create(params={"email": "new@example.com"}).to_dict()
    customer = Customer.objects.create(email="old@example.com", stripe_customer_id=stripe_customer["id"],
                                       stripe_customer_state_at=timezone.now())
    event = stripe_event("customer.updated", {"id": stripe_customer["id"], "email": "stale@example.com"},
                         created=int(timezone.now().timestamp()))
    row, _ = webhook_event_store(event=event, enqueue=False)

    assert webhook_event_process(webhook_event_id=row.pk) == "processed"

    customer.refresh_from_db()
    assert customer.email == "new@example.com"  # Stripe's current answer, not the unordered snapshot
    assert stripe_reads == [("customer_retrieve", stripe_customer["id"], 0)]
