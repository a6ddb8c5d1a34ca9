"""Access locks from the dunning policy: grace, soft lock past grace_days, hard lock past hard_lock_days."""
from datetime import timedelta
from io import StringIO

import pytest
from django.core.management import call_command

from billing_console.models import AuditEvent, Customer
from billing_console.selectors import Reason, customer_entitlement
from dunning.models import CustomerDunning, DunningCase
from dunning.services import dunning_enforce_access_policies
from tests.dunning.factories import (DunningCaseFactory, DunningCustomerFactory, DunningPolicyFactory, DunningStepFactory,
                                     DunningStepLogFactory)

pytestmark = pytest.mark.django_db


def state(customer):
    customer.refresh_from_db()
    return customer.access_state


def test_days_past_due_move_the_customer_from_grace_to_soft_to_hard(policy, t0):
    customer = DunningCustomerFactory(access_state="grace", subscription_status="past_due")
    DunningCaseFactory(customer=customer, opened_at=t0)
    for days, expected, reason in [(3, "grace", Reason.PAST_DUE), (3.01, "soft_locked", Reason.PAST_DUE_SOFT_LOCK),
                                   (14, "soft_locked", Reason.PAST_DUE_SOFT_LOCK), (14.01, "hard_locked", Reason.HARD_LOCKED)]:
        now = t0 + timedelta(days=days)
        dunning_enforce_access_policies(now=now)
        assert state(customer) == expected, days
        assert customer_entitlement(customer, now=now).reason == reason
    changes = AuditEvent.objects.filter(action="customer.access_state_changed", customer=customer)
    assert [e.data["to"] for e in changes.order_by("at")] == ["soft_locked", "hard_locked"]


def test_oldest_unpaid_case_decides_and_policy_of_that_case_applies(t0):
    short = DunningPolicyFactory(grace_days=1, hard_lock_days=2)
    DunningStepFactory(policy=short, offset_days=0)
    customer = DunningCustomerFactory(access_state="grace")
    DunningCaseFactory(customer=customer, policy=short, opened_at=t0)
    DunningCaseFactory(customer=customer, policy=short, opened_at=t0 + timedelta(days=2))
    dunning_enforce_access_policies(now=t0 + timedelta(days=2, hours=1))
    assert state(customer) == "hard_locked"


def test_locks_without_an_unpaid_case_are_lifted(policy, t0):
    stuck = DunningCustomerFactory(access_state="hard_locked")
    DunningCaseFactory(customer=stuck, opened_at=t0, status="recovered")
    canceled = DunningCustomerFactory(access_state="canceled")
    counts = dunning_enforce_access_policies(now=t0 + timedelta(days=30))
    assert counts["unlocked"] == 1
    assert state(stuck) == "active" and state(canceled) == "canceled"


def test_excluded_customer_is_never_locked(policy, t0):
    customer = DunningCustomerFactory(access_state="soft_locked")
    CustomerDunning.objects.create(customer=customer, excluded=True)
    DunningCaseFactory(customer=customer, opened_at=t0)
    dunning_enforce_access_policies(now=t0 + timedelta(days=20))
    assert state(customer) == "active"


def test_exhausted_case_still_locks_and_is_canceled_in_stripe_when_the_policy_says(subscriber, emulator, deliver, t0):
    strict = DunningPolicyFactory(grace_days=1, hard_lock_days=2, cancel_after_days=5)
    customer = subscriber
    case = DunningCaseFactory(customer=customer, policy=strict, opened_at=t0, status="exhausted", next_step_at=None)
    DunningStepLogFactory(case=case, status="sent")
    assert dunning_enforce_access_policies(now=t0 + timedelta(days=3))["cancel_requested"] == 0
    assert state(customer) == "hard_locked"
    assert emulator.get(customer.subscription_id)["status"] == "active"

    mark = len(emulator.events)
    assert dunning_enforce_access_policies(now=t0 + timedelta(days=6))["cancel_requested"] == 1
    case.refresh_from_db()
    assert (case.status, case.close_reason, case.cancel_error) == ("canceled", "canceled_by_policy", "")
    assert emulator.get(customer.subscription_id)["status"] == "canceled"
    assert AuditEvent.objects.filter(action="dunning.subscription_cancel_requested", target_id=str(case.pk)).count() == 1
    deliver(emulator.events[mark:])  # customer.subscription.deleted: the core cancels access, dunning has nothing left
    assert state(customer) == "canceled"
    assert dunning_enforce_access_policies(now=t0 + timedelta(days=7))["cancel_requested"] == 0


def test_cancellation_that_stripe_cannot_do_now_is_recorded_and_tried_again(t0, settings):
    settings.STRIPE_SECRET_KEY = ""
    strict = DunningPolicyFactory(grace_days=1, hard_lock_days=2, cancel_after_days=5)
    case = DunningCaseFactory(policy=strict, opened_at=t0, status="exhausted", next_step_at=None)
    assert dunning_enforce_access_policies(now=t0 + timedelta(days=6))["cancel_requested"] == 1
    case.refresh_from_db()
    assert case.status == "exhausted" and "not configured" in case.cancel_error and case.cancel_requested_at is None
    assert AuditEvent.objects.filter(action="dunning.subscription_cancel_failed").count() == 1
    assert dunning_enforce_access_policies(now=t0 + timedelta(days=7))["cancel_requested"] == 1  # tried again


def test_query_count_does_not_grow_with_customers_already_in_their_state(policy, t0, django_assert_max_num_queries):
    for _ in range(30):
        DunningCaseFactory(customer=DunningCustomerFactory(access_state="grace"), opened_at=t0)
    with django_assert_max_num_queries(3):
        counts = dunning_enforce_access_policies(now=t0 + timedelta(days=1))
    assert counts["checked"] == 30


def test_command_prints_what_it_changed(policy, t0):
    customer = DunningCustomerFactory(access_state="grace")
    DunningCaseFactory(customer=customer, opened_at=t0 - timedelta(days=20))
    out = StringIO()
    call_command("enforce_access_policies", stdout=out)
    assert "hard_locked: 1" in out.getvalue()
    event = AuditEvent.objects.get(action="customer.access_state_changed", customer=customer)
    assert (event.actor_type, event.actor) == ("system", "manage.py enforce_access_policies")
    assert Customer.objects.get(pk=customer.pk).access_state == "hard_locked"
