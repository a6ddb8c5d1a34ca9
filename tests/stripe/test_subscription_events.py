"""customer.subscription.* from the emulator's clock: renewals, failures, cancellation; and the
watermark: duplicated, reordered and late events never move a customer's state backwards."""
import copy

import pytest

from billing_console.models import AuditEvent, Customer
from billing_console.selectors import Reason, customer_entitlement
from billing_console.stripe.subscriptions import customer_resync
from tests.stripe.test_checkout_flow import start_checkout
from billing_console.stripe.gateway import client as stripe_api

pytestmark = pytest.mark.django_db


@pytest.fixture
def subscribed(client, emulator, deliver):
    """A customer who paid with 4242, every checkout event applied. Returns (customer, emulator mark)."""
    attempt, _ = start_checkout(client, email="lin@example.com")
    assert emulator.pay_checkout(attempt.stripe_session_id)["ok"]
    deliver(emulator.events)
    return Customer.objects.get(email="lin@example.com"), len(emulator.events)


def types(events):
    return [e["type"] for e in events]


def test_paid_renewal_moves_the_period_end_forward(subscribed, emulator, deliver):
    customer, mark = subscribed
    first_end = customer.current_period_end
    emulator.advance(days=32)
    renewal = emulator.events[mark:]
    assert "invoice.paid" in types(renewal) and "customer.subscription.updated" in types(renewal)
    deliver(renewal)
    customer.refresh_from_db()
    assert customer.subscription_status == "active" and customer.current_period_end > first_end
    assert customer_entitlement(customer).reason == Reason.VALID


def test_failed_renewal_makes_the_subscription_past_due_but_still_entitled(subscribed, emulator, deliver):
    customer, mark = subscribed
    emulator.set_card(customer.stripe_customer_id, "decline")
    emulator.advance(days=32)
    renewal = emulator.events[mark:]
    assert "invoice.payment_failed" in types(renewal)
    deliver(renewal)
    customer.refresh_from_db()
    assert customer.subscription_status == "past_due"
    assert customer.access_state == Customer.AccessState.GRACE  # dunning's case opened: grace, still entitled
    assert customer_entitlement(customer).reason == Reason.PAST_DUE


def test_retries_running_out_cancel_the_subscription_and_access(subscribed, emulator, deliver):
    customer, mark = subscribed
    emulator.set_card(customer.stripe_customer_id, "decline")
    emulator.advance(days=45)
    events = emulator.events[mark:]
    assert types(events)[-1] == "customer.subscription.deleted"
    deliver(events)
    customer.refresh_from_db()
    assert (customer.subscription_status, customer.access_state) == ("canceled", Customer.AccessState.CANCELED)
    assert customer_entitlement(customer).reason == Reason.CANCELED


def test_cancel_at_period_end_then_deleted_at_period_end(subscribed, emulator, deliver):
    customer, mark = subscribed
    stripe_api().v1.subscriptions.update(customer.subscription_id, params={"cancel_at_period_end": True})
    deliver(emulator.events[mark:])
    customer.refresh_from_db()
    assert customer.cancel_at_period_end and customer.subscription_status == "active"
    assert customer_entitlement(customer).entitled

    mark = len(emulator.events)
    emulator.advance(days=32)
    deliver(emulator.events[mark:])
    customer.refresh_from_db()
    assert customer.subscription_status == "canceled" and customer.access_state == Customer.AccessState.CANCELED
    assert AuditEvent.objects.filter(action="customer.access_state_changed", customer=customer).count() == 1


def test_reordered_renewal_events_end_on_the_newest_state(subscribed, emulator, deliver):
    """past_due (day 30) then active again (day 33, retry paid), delivered newest first."""
    customer, mark = subscribed
    emulator.set_card(customer.stripe_customer_id, "decline")
    emulator.advance(days=31)
    emulator.set_card(customer.stripe_customer_id, "succeed")
    emulator.advance(days=3)
    updates = [e for e in emulator.events[mark:] if e["type"] == "customer.subscription.updated"]
    assert [u["data"]["object"]["status"] for u in updates] == ["past_due", "active"]
    deliver(list(reversed(updates)))
    customer.refresh_from_db()
    assert customer.subscription_status == "active"
    assert customer.subscription_state_at.timestamp() == updates[-1]["created"]


def test_late_old_event_days_later_does_not_undo_a_cancellation(subscribed, emulator, deliver):
    customer, mark = subscribed
    created = [e for e in emulator.events if e["type"] == "customer.subscription.created"]
    stripe_api().v1.subscriptions.cancel(customer.subscription_id)
    deliver(emulator.events[mark:])
    deliver(created)  # Stripe retried the creation event days later: it is already stored -> no effect
    late = copy.deepcopy(created[0])
    late["id"] = "evt_late_copy_of_created"
    deliver([late])  # even as a new event id, its older timestamp loses
    customer.refresh_from_db()
    assert customer.subscription_status == "canceled" and customer.access_state == Customer.AccessState.CANCELED


def test_same_second_events_never_revive_a_canceled_subscription(subscribed, emulator, deliver):
    customer, mark = subscribed
    stripe_api().v1.subscriptions.cancel(customer.subscription_id)
    deleted = emulator.events[-1]
    stale = copy.deepcopy(deleted)
    stale.update(id="evt_same_second_active", type="customer.subscription.updated")
    stale["data"]["object"]["status"] = "active"
    deliver([deleted, stale])
    customer.refresh_from_db()
    assert customer.subscription_status == "canceled"


def test_subscription_event_before_its_checkout_event_creates_the_customer_from_the_attempt(
        client, emulator, deliver):
    attempt, _ = start_checkout(client, email="early@example.com")
    assert emulator.pay_checkout(attempt.stripe_session_id)["ok"]
    events = emulator.events
    first = [e for e in events if e["type"] == "customer.subscription.created"]
    deliver(first + [e for e in events if e not in first])
    customer = Customer.objects.get(email="early@example.com")
    attempt.refresh_from_db()
    assert attempt.status == "paid" and attempt.customer == customer
    assert customer.subscription_status == "active"


def test_resync_reads_stripe_and_applies_the_current_state(subscribed, emulator):
    customer, _ = subscribed
    stripe_api().v1.subscriptions.cancel(customer.subscription_id)  # the events never arrive
    customer = customer_resync(customer=customer, actor_type="admin", actor="support")
    assert customer.subscription_status == "canceled" and customer.access_state == Customer.AccessState.CANCELED
    assert AuditEvent.objects.filter(action="customer.resynced", customer=customer).exists()


def test_customer_updated_event_changes_email_and_name(subscribed, emulator, deliver):
    customer, mark = subscribed
    stripe_api().v1.customers.update(customer.stripe_customer_id,
                                     params={"email": "lin.new@example.com", "name": "Lin New"})
    deliver(emulator.events[mark:])
    customer.refresh_from_db()
    assert (customer.email, customer.name) == ("lin.new@example.com", "Lin New")


def customer_updates(emulator, customer, mark, *names, spacing=10):
    """One customer.updated per name, in Stripe's order, each `spacing` seconds after the one before
    (further apart than the clock skew the watermark allows)."""
    for name in names:
        stripe_api().v1.customers.update(customer.stripe_customer_id, params={"name": name})
    events = [copy.deepcopy(e) for e in emulator.events[mark:] if e["type"] == "customer.updated"]
    assert len(events) == len(names)
    for i, event in enumerate(events):
        event["created"] = events[0]["created"] + i * spacing
    return events


def reads_of(emulator, customer):
    return [r for r in emulator.requests if r["method"] == "GET" and r["path"].endswith(customer.stripe_customer_id)]


def test_late_customer_updated_is_ignored_without_asking_stripe(subscribed, emulator, deliver):
    customer, mark = subscribed
    first, second = customer_updates(emulator, customer, mark, "Lin First", "Lin Second")
    reads = len(reads_of(emulator, customer))
    deliver([second, first])
    customer.refresh_from_db()
    assert customer.name == "Lin Second"
    assert len(reads_of(emulator, customer)) == reads  # the event's own snapshot and time decided, no re-read
    assert AuditEvent.objects.filter(action="customer.updated_from_stripe", customer=customer).count() == 1


def test_customer_updated_at_the_same_second_re_reads_stripe(subscribed, emulator, deliver):
    customer, mark = subscribed
    first, second = customer_updates(emulator, customer, mark, "Lin First", "Lin Second")
    first["created"] = second["created"]  # Stripe's times are seconds: the order of these two is unknown
    deliver([second])
    reads = len(reads_of(emulator, customer))
    deliver([first])
    customer.refresh_from_db()
    assert customer.name == "Lin Second"  # Stripe's current value, not the late snapshot
    assert len(reads_of(emulator, customer)) == reads + 1


def test_an_event_older_than_a_resync_does_not_undo_it(subscribed, emulator, deliver):
    customer, mark = subscribed
    [late] = customer_updates(emulator, customer, mark, "Lin Before")
    stripe_api().v1.customers.update(customer.stripe_customer_id, params={"name": "Lin After"})
    late["created"] -= 60  # Stripe sent it a minute before support's resync; it arrives after
    customer_resync(customer=customer, actor_type="admin", actor="support")
    deliver([late])
    customer.refresh_from_db()
    assert customer.name == "Lin After"
