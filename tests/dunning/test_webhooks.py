"""The Stripe events dunning handles, dispatched the way the webhook worker does."""
from datetime import timedelta

import pytest
from django.core import mail

from billing_console.models import AuditEvent, Customer, Invoice
from billing_console.stripe import dispatch as events
from dunning.models import CustomerDunning, DunningCase, DunningStepLog
from tests.dunning.factories import DunningCustomerFactory, event, invoice_object, subscription_object

pytestmark = pytest.mark.django_db


def fail(customer, at, invoice_id="in_fail0001", **kw):
    events.dispatch(event("invoice.payment_failed", invoice_object(customer=customer, invoice_id=invoice_id, **kw), at=at))


def test_payment_failed_opens_case_queues_first_step_and_starts_grace(policy, t0):
    customer = DunningCustomerFactory()
    fail(customer, t0)

    case = DunningCase.objects.get(invoice_id="in_fail0001")
    assert (case.customer, case.status, case.opened_at, case.subscription_id) == (customer, "open", t0, customer.subscription_id)
    assert (case.amount_due, case.currency, case.policy) == (900, "usd", policy)
    assert case.next_step_at == t0 + timedelta(days=1)
    assert list(case.step_logs.values_list("step_code", "status")) == [("FAIL_IMMEDIATE", "queued")]
    customer.refresh_from_db()
    assert customer.access_state == Customer.AccessState.GRACE
    assert AuditEvent.objects.filter(action="dunning.case_opened", target_id=str(case.pk)).count() == 1


def test_first_step_is_sent_right_after_the_event_commits(policy, t0, django_capture_on_commit_callbacks):
    customer = DunningCustomerFactory()
    with django_capture_on_commit_callbacks(execute=True):
        fail(customer, t0)
    row = DunningStepLog.objects.get()
    assert row.status == "sent"
    [reminder] = [m for m in mail.outbox if not m.subject.startswith("Invoice ")]  # the invoice itself also goes out
    assert reminder.to == [customer.email]
    assert "https://invoice.stripe.test/i/abc" in reminder.body and "$9.00" in reminder.subject


def test_duplicate_failure_events_open_one_case_and_queue_one_step(policy, t0):
    customer = DunningCustomerFactory()
    evt = event("invoice.payment_failed", invoice_object(customer=customer, invoice_id="in_dup"), at=t0)
    for _ in range(3):
        events.dispatch(evt)
    # Stripe's own retry of the same invoice is a new event with a higher attempt count.
    fail(customer, t0 + timedelta(days=2), invoice_id="in_dup", attempt_count=2)

    case = DunningCase.objects.get()
    assert case.opened_at == t0 and case.last_failure_at == t0 + timedelta(days=2) and case.attempt_count == 2
    assert DunningStepLog.objects.count() == 1
    assert AuditEvent.objects.filter(action="dunning.case_opened").count() == 1


def test_failure_for_unknown_customer_is_logged_and_skipped(policy, t0, caplog):
    stranger = DunningCustomerFactory.build(subscription_id="sub_nobody", stripe_customer_id="cus_nobody")
    fail(stranger, t0)
    assert not DunningCase.objects.exists()
    assert [r.invoice for r in caplog.records if getattr(r, "event", "") == "dunning_no_customer"] == ["in_fail0001"]


def test_failure_of_a_subscriptions_first_invoice_opens_nothing(policy, t0):
    customer = DunningCustomerFactory(subscription_status="incomplete")
    fail(customer, t0, billing_reason="subscription_create")
    assert not DunningCase.objects.exists()
    customer.refresh_from_db()
    assert customer.access_state == "active"


def test_failure_event_without_an_invoice_id_is_logged_and_opens_nothing(policy, t0, caplog):
    customer = DunningCustomerFactory()
    invoice = invoice_object(customer=customer)
    invoice["id"] = ""
    events.dispatch(event("invoice.payment_failed", invoice, at=t0))
    assert not DunningCase.objects.exists()
    assert any(getattr(r, "event", "") == "dunning_bad_invoice" for r in caplog.records)


def test_late_failure_event_for_a_paid_invoice_opens_nothing(policy, t0):
    customer = DunningCustomerFactory()
    Invoice.objects.create(stripe_id="in_paid", customer=customer, stripe_customer_id=customer.stripe_customer_id,
                           currency="usd", status="paid", state_at=t0 + timedelta(hours=1))
    fail(customer, t0, invoice_id="in_paid")
    assert not DunningCase.objects.exists()


def test_invoice_paid_recovers_the_case_skips_pending_steps_and_lifts_the_lock(policy, t0):
    customer = DunningCustomerFactory()
    fail(customer, t0)
    Customer.objects.filter(pk=customer.pk).update(access_state="hard_locked")

    paid = invoice_object(customer=customer, invoice_id="in_fail0001", status="paid", paid_at=t0 + timedelta(days=15))
    events.dispatch(event("invoice.paid", paid, at=t0 + timedelta(days=15)))
    events.dispatch(event("invoice.paid", paid, at=t0 + timedelta(days=15)))  # duplicate: no-op

    case = DunningCase.objects.get()
    assert (case.status, case.close_reason, case.closed_at) == ("recovered", "recovered", t0 + timedelta(days=15))
    assert list(case.step_logs.values_list("status", "reason")) == [("skipped", "recovered")]
    customer.refresh_from_db()
    assert customer.access_state == "active"
    assert AuditEvent.objects.filter(action="dunning.case_recovered").count() == 1


def test_paid_invoice_without_a_case_changes_nothing(policy, t0):
    customer = DunningCustomerFactory()
    events.dispatch(event("invoice.paid", invoice_object(customer=customer, status="paid", paid_at=t0), at=t0))
    assert not DunningCase.objects.exists()
    customer.refresh_from_db()
    assert customer.access_state == "active"


def test_lock_stays_while_another_invoice_of_the_customer_is_unpaid(policy, t0):
    customer = DunningCustomerFactory()
    fail(customer, t0, invoice_id="in_first")
    fail(customer, t0 + timedelta(days=1), invoice_id="in_second")
    events.dispatch(event("invoice.paid", invoice_object(customer=customer, invoice_id="in_second", status="paid"),
                          at=t0 + timedelta(days=5)))
    customer.refresh_from_db()
    # The first invoice is 5 days past due: above grace_days (3), so still soft locked.
    assert customer.access_state == "soft_locked"
    assert DunningCase.objects.get(invoice_id="in_first").status == "open"


def test_subscription_active_again_recovers_but_a_late_older_update_does_not(policy, t0):
    customer = DunningCustomerFactory()
    fail(customer, t0)
    events.dispatch(event("customer.subscription.updated", subscription_object(customer=customer, status="active"),
                          at=t0 - timedelta(minutes=5)))
    assert DunningCase.objects.get().status == "open"

    events.dispatch(event("customer.subscription.updated", subscription_object(customer=customer, status="past_due"),
                          at=t0 + timedelta(hours=1)))
    assert DunningCase.objects.get().status == "open"

    events.dispatch(event("customer.subscription.updated", subscription_object(customer=customer, status="active"),
                          at=t0 + timedelta(days=2)))
    case = DunningCase.objects.get()
    assert (case.status, case.close_reason) == ("recovered", "subscription_active")
    customer.refresh_from_db()
    assert customer.access_state == "active"


def test_subscription_deleted_closes_the_case_as_canceled(policy, t0):
    customer = DunningCustomerFactory()
    fail(customer, t0)
    events.dispatch(event("customer.subscription.deleted", subscription_object(customer=customer, status="canceled"),
                          at=t0 + timedelta(days=20)))
    case = DunningCase.objects.get()
    assert (case.status, case.close_reason) == ("canceled", "subscription_canceled")
    assert case.step_logs.get().status == "skipped"


def test_excluded_customer_gets_a_case_but_no_reminder_and_no_lock(policy, t0):
    customer = DunningCustomerFactory()
    CustomerDunning.objects.create(customer=customer, excluded=True)
    fail(customer, t0)
    row = DunningStepLog.objects.get()
    assert (row.status, row.reason) == ("skipped", "excluded")
    customer.refresh_from_db()
    assert customer.access_state == "active"


def test_customer_assigned_policy_is_used(policy, t0):
    from tests.dunning.factories import DunningPolicyFactory, DunningStepFactory

    own = DunningPolicyFactory(grace_days=1, hard_lock_days=2)
    DunningStepFactory(policy=own, code="ONLY_D+0", offset_days=0)
    customer = DunningCustomerFactory()
    CustomerDunning.objects.create(customer=customer, policy=own)
    fail(customer, t0)
    case = DunningCase.objects.get()
    assert case.policy == own and case.next_step_at is None
    assert list(case.step_logs.values_list("step_code", flat=True)) == ["ONLY_D+0"]
