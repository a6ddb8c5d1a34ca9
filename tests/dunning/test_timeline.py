"""The whole dunning timeline on the Stripe emulator's clock: a renewal fails, every step goes out on
its day (email and WhatsApp), the soft then hard lock follow the policy, the customer pays, the lock
lifts at once. Events travel signed through the webhook view and the worker, as in production."""
from datetime import datetime, timedelta, timezone

import pytest
from django.core import mail

from billing_console.models import Customer
from billing_console.selectors import Reason, customer_entitlement
from dunning.models import DunningCase
from dunning.sending import dunning_run
from dunning.services import dunning_enforce_access_policies

pytestmark = pytest.mark.django_db


def emulator_now(emulator) -> datetime:
    return datetime.fromtimestamp(emulator.now(), tz=timezone.utc)


def dunning_emails():
    return [m for m in mail.outbox if "unpaid" in m.subject or "did not go through" in m.subject]


def test_failure_steps_locks_payment_and_unlock_on_the_emulator_clock(subscriber, emulator, deliver, evolution):
    customer = subscriber
    seen = len(emulator.events)
    emulator.set_card(customer.stripe_customer_id, outcome="decline")
    sub = emulator.get(customer.subscription_id)
    emulator.advance(seconds=sub["items"]["data"][0]["current_period_end"] - emulator.now() + 60)

    def apply_new_events():
        nonlocal seen
        events = emulator.events[seen:]
        seen += len(events)
        deliver(events)
        return [e["type"] for e in events]

    assert "invoice.payment_failed" in apply_new_events()
    case = DunningCase.objects.get(customer=customer)
    failed_at = case.opened_at
    assert case.invoice_id == emulator.get(customer.subscription_id)["latest_invoice"]
    customer.refresh_from_db()
    assert (customer.subscription_status, customer.access_state) == ("past_due", "grace")
    assert customer_entitlement(customer, now=failed_at).reason == Reason.PAST_DUE
    assert [m.subject for m in dunning_emails()] == ["Your payment of $9.00 did not go through"]
    assert case.step_logs.get().status == "sent"  # FAIL_IMMEDIATE, sent as soon as the event committed

    expected = {  # day -> (steps sent so far, access state, entitlement reason)
        1: ({"FAIL_IMMEDIATE", "SOFT_D+1"}, "grace", Reason.PAST_DUE),
        2: ({"FAIL_IMMEDIATE", "SOFT_D+1"}, "grace", Reason.PAST_DUE),
        3: ({"FAIL_IMMEDIATE", "SOFT_D+1", "SOFT_D+3"}, "soft_locked", Reason.PAST_DUE_SOFT_LOCK),
        7: ({"FAIL_IMMEDIATE", "SOFT_D+1", "SOFT_D+3", "SOFT_D+7"}, "soft_locked", Reason.PAST_DUE_SOFT_LOCK),
        10: ({"FAIL_IMMEDIATE", "SOFT_D+1", "SOFT_D+3", "SOFT_D+7", "FINAL_D+10"}, "soft_locked", Reason.PAST_DUE_SOFT_LOCK),
        14: ({"FAIL_IMMEDIATE", "SOFT_D+1", "SOFT_D+3", "SOFT_D+7", "FINAL_D+10"}, "hard_locked", Reason.HARD_LOCKED),
    }
    for day in range(1, 15):
        # Ten minutes past the day: the task runs every ten minutes.
        target = failed_at + timedelta(days=day, minutes=10)
        emulator.advance(seconds=(target - emulator_now(emulator)).total_seconds())
        apply_new_events()  # Stripe's own retries on days 3, 5 and 7 fail again: the same case
        now = emulator_now(emulator)
        dunning_run(now=now)
        dunning_enforce_access_policies(now=now)
        if day in expected:
            sent, state, reason = expected[day]
            assert set(case.step_logs.filter(status="sent").values_list("step_code", flat=True)) == sent, day
            customer.refresh_from_db()
            assert customer.access_state == state, day
            assert customer_entitlement(customer, now=now).reason == reason, day

    assert DunningCase.objects.filter(customer=customer).count() == 1
    case.refresh_from_db()
    assert (case.status, case.attempt_count) == ("exhausted", 4)
    assert len(dunning_emails()) == 3  # FAIL_IMMEDIATE, SOFT_D+3, FINAL_D+10
    assert [m["number"] for m in evolution.messages] == ["5511987654321"] * 2  # SOFT_D+1, SOFT_D+7
    assert not case.step_logs.exclude(status="sent").exists()

    # The customer fixes the card; Stripe's retry on day 15 pays the invoice.
    emulator.set_card(customer.stripe_customer_id, outcome="succeed")
    emulator.advance(days=1)
    assert "invoice.paid" in apply_new_events()
    case.refresh_from_db()
    customer.refresh_from_db()
    assert (case.status, case.close_reason) == ("recovered", "recovered")
    assert (customer.access_state, customer.subscription_status) == ("active", "active")
    assert customer_entitlement(customer).reason == Reason.VALID

    # Later runs change nothing: no reminder, no lock.
    now = emulator_now(emulator) + timedelta(days=1)
    assert dunning_run(now=now)["sent"] == 0
    dunning_enforce_access_policies(now=now)
    assert Customer.objects.get(pk=customer.pk).access_state == "active"
    assert len(dunning_emails()) == 3 and len(evolution.messages) == 2
