"""Support's console: case and step-log lists, the actions (audited, thin), the customer page section."""
from datetime import timedelta

import pytest
from django.core import mail
from django.urls import reverse
from django.utils import timezone

from billing_console.models import AuditEvent
from dunning.models import CustomerDunning, DunningCase
from tests.dunning.factories import DunningCaseFactory, DunningPolicyFactory, DunningStepLogFactory

pytestmark = pytest.mark.django_db


@pytest.fixture
def staff(admin_client):
    return admin_client


def action(client, model, name, ids, **extra):
    url = reverse(f"admin:dunning_{model}_changelist")
    return client.post(url, {"action": name, helpers_key(): [str(i) for i in ids], **extra}, follow=True)


def helpers_key():
    from django.contrib.admin import helpers
    return helpers.ACTION_CHECKBOX_NAME


def messages_of(response):
    return [str(m) for m in response.context["messages"]]


def test_case_list_filters_and_uses_a_fixed_number_of_queries(staff, policy, django_assert_max_num_queries):
    now = timezone.now()
    for days in (1, 5, 20):
        DunningCaseFactory(opened_at=now - timedelta(days=days))
    url = reverse("admin:dunning_dunningcase_changelist")
    with django_assert_max_num_queries(12):
        assert staff.get(url).status_code == 200
    DunningCaseFactory.create_batch(10, opened_at=now)
    with django_assert_max_num_queries(12):
        response = staff.get(url)
    assert response.status_code == 200
    assert len(staff.get(url, {"past_due": "4-14"}).context["cl"].result_list) == 1
    assert len(staff.get(url, {"past_due": "15+"}).context["cl"].result_list) == 1
    assert len(staff.get(url, {"status__exact": "open"}).context["cl"].result_list) == 13


def test_case_page_shows_step_logs_without_secrets(staff, policy, settings):
    settings.EVOLUTION_API_KEY = "evo-secret-key-123456"
    row = DunningStepLogFactory(status="failed", reason="instance_disconnected",
                                provider_response={"status": 500, "body": {"message": "Connection Closed"}})
    response = staff.get(reverse("admin:dunning_dunningcase_change", args=[row.case_id]))
    assert response.status_code == 200
    assert b"instance_disconnected" in response.content and b"evo-secret-key" not in response.content


def test_send_step_now_action_sends_and_audits(staff, policy):
    case = DunningCaseFactory()
    response = action(staff, "dunningcase", "send_step_now", [case.pk], step_code="SOFT_D+3")
    assert "1 case sent SOFT_D+3." in messages_of(response)
    assert case.step_logs.get().status == "sent" and len(mail.outbox) == 1
    assert AuditEvent.objects.filter(action="dunning.step_send_requested", actor_type="admin").exists()


@pytest.mark.parametrize("code, expected", [("", "Give the step code"), ("NOPE", "Unknown step 'NOPE'")])
def test_send_step_now_with_bad_step_code_reports_and_writes_nothing(staff, policy, code, expected):
    case = DunningCaseFactory()
    response = action(staff, "dunningcase", "send_step_now", [case.pk], step_code=code)
    assert response.status_code == 200
    assert any(expected in m for m in messages_of(response))
    assert not case.step_logs.exists() and mail.outbox == []


def test_close_case_action_closes_skips_and_unlocks(staff, policy):
    case = DunningCaseFactory(customer__access_state="soft_locked")
    DunningStepLogFactory(case=case)
    response = action(staff, "dunningcase", "close_case", [case.pk])
    assert "1 case closed." in messages_of(response)
    case.refresh_from_db()
    assert (case.status, case.close_reason) == ("canceled", "closed_by_support")
    assert case.step_logs.get().status == "skipped"
    case.customer.refresh_from_db()
    assert case.customer.access_state == "active"
    assert AuditEvent.objects.filter(action="dunning.case_canceled", actor_type="admin").exists()


def test_enforce_policies_now_action_locks(staff, policy):
    case = DunningCaseFactory(customer__access_state="grace", opened_at=timezone.now() - timedelta(days=5))
    response = action(staff, "dunningcase", "enforce_policies_now", [case.pk])
    assert any("soft_locked 1" in m for m in messages_of(response))
    assert AuditEvent.objects.get(action="dunning.access_policies_enforced").data["soft_locked"] == 1
    case.customer.refresh_from_db()
    assert case.customer.access_state == "soft_locked"


def test_sync_from_stripe_closes_a_case_whose_payment_webhook_was_missed(staff, subscriber, emulator, deliver):
    customer = subscriber
    mark = len(emulator.events)
    emulator.set_card(customer.stripe_customer_id, outcome="decline")
    sub = emulator.get(customer.subscription_id)
    emulator.advance(seconds=sub["items"]["data"][0]["current_period_end"] - emulator.now() + 60)
    deliver(emulator.events[mark:])
    case = DunningCase.objects.get(customer=customer)
    # The customer pays, but the events never arrive (webhook outage).
    emulator.set_card(customer.stripe_customer_id, outcome="succeed")
    emulator.advance(days=3)
    assert emulator.get(case.invoice_id)["status"] == "paid"
    customer.refresh_from_db()
    assert customer.access_state == "grace"

    response = action(staff, "dunningcase", "sync_from_stripe", [case.pk])
    assert "1 case synced from Stripe." in messages_of(response)
    case.refresh_from_db()
    customer.refresh_from_db()
    assert (case.status, case.close_reason) == ("recovered", "recovered_on_resync")
    assert (customer.access_state, customer.subscription_status) == ("active", "active")
    assert AuditEvent.objects.filter(action="customer.resynced", actor_type="admin").exists()


def test_sync_from_stripe_reports_stripe_errors(staff, policy, settings):
    settings.STRIPE_SECRET_KEY = "sk_test_" + "x" * 24
    settings.STRIPE_API_HOST = "http://127.0.0.1:9"  # nothing listens
    settings.STRIPE_MAX_RETRIES = 0
    case = DunningCaseFactory()
    response = action(staff, "dunningcase", "sync_from_stripe", [case.pk])
    assert any("Stripe" in m and case.invoice_id in m for m in messages_of(response))
    assert "0 cases synced from Stripe." in messages_of(response)
    assert DunningCase.objects.get(pk=case.pk).status == "open"


def test_retry_action_resends_failed_and_refuses_sent(staff, policy):
    failed = DunningStepLogFactory(status="failed", reason="email_error")
    sent = DunningStepLogFactory(status="sent", step_code="SOFT_D+3", case=failed.case, sent_at=timezone.now())
    response = action(staff, "dunningsteplog", "retry_step", [failed.pk, sent.pk])
    msgs = messages_of(response)
    assert "1 step sent." in msgs and any("only failed or skipped" in m for m in msgs)
    failed.refresh_from_db()
    assert failed.status == "sent" and len(mail.outbox) == 1


def test_cases_and_logs_cannot_be_added_or_deleted_by_hand(staff, policy):
    row = DunningStepLogFactory()
    assert staff.get(reverse("admin:dunning_dunningcase_add")).status_code == 403
    assert staff.get(reverse("admin:dunning_dunningsteplog_delete", args=[row.pk])).status_code == 403


def test_customer_page_shows_dunning_and_saves_settings_through_the_service(staff, policy):
    case = DunningCaseFactory(customer__access_state="soft_locked", opened_at=timezone.now() - timedelta(days=5))
    DunningStepLogFactory(case=case, step_code="FAIL_IMMEDIATE", status="sent")
    customer = case.customer
    url = reverse("admin:billing_console_customer_change", args=[customer.pk])
    page = staff.get(url)
    assert page.status_code == 200
    assert case.invoice_id.encode() in page.content and b"FAIL_IMMEDIATE: sent" in page.content

    other = DunningPolicyFactory(name="Gentle")
    form = change_form_data(page)
    form.update({"dunning_settings-0-policy": str(other.pk), "dunning_settings-0-excluded": "on",
                 "dunning_settings-0-note": "pays by bank transfer"})
    response = staff.post(url, form)
    assert response.status_code == 302, response.context["errors"] if response.context else response
    settings_row = CustomerDunning.objects.get(customer=customer)
    assert (settings_row.policy, settings_row.excluded, settings_row.note) == (other, True, "pays by bank transfer")
    customer.refresh_from_db()
    assert customer.access_state == "active"  # excluded: the lock is lifted at once
    event = AuditEvent.objects.get(action="dunning.customer_settings_changed")
    assert event.actor_type == "admin" and event.data["to"]["excluded"] is True
    assert DunningCase.objects.get(pk=case.pk).status == "open"


def change_form_data(page) -> dict:
    """The POST a browser would send for an unchanged change page: the main form and every inline's
    management form and existing rows (other apps add their inlines to the customer page too)."""
    data = {}
    adminform = page.context["adminform"].form
    for name, field in adminform.fields.items():
        value = adminform.initial.get(name, field.initial)
        if value is not None:
            data[name] = value
    for inline in page.context["inline_admin_formsets"]:
        formset = inline.formset
        for key, value in formset.management_form.initial.items():
            data[f"{formset.prefix}-{key}"] = value
        for form in formset.forms:
            for name in form.fields:
                value = form.initial.get(name)
                if value is None and name == formset.fk.name:
                    value = formset.instance.pk
                if value is not None and not isinstance(value, bool):
                    data[form.add_prefix(name)] = getattr(value, "pk", value)
    return data


def test_policy_with_bad_step_or_lock_days_is_refused_and_nothing_saved(staff, policy):
    from dunning.models import DunningPolicy

    url = reverse("admin:dunning_dunningpolicy_add")
    form = {"name": "Strict", "grace_days": "10", "hard_lock_days": "5", "cancel_after_days": "",
            "steps-TOTAL_FORMS": "1", "steps-INITIAL_FORMS": "0", "steps-MIN_NUM_FORMS": "0", "steps-MAX_NUM_FORMS": "1000",
            "steps-0-code": "soft d+1", "steps-0-offset_days": "1", "steps-0-channel": "email", "steps-0-template": "missing"}
    response = staff.post(url, form)
    assert response.status_code == 200
    text = response.content.decode()
    assert "The hard lock cannot come before the soft lock." in text
    assert "Upper-case letters" in text
    assert not DunningPolicy.objects.filter(name="Strict").exists()

    form.update({"hard_lock_days": "14", "steps-0-code": "SOFT_D+1"})
    response = staff.post(url, form)
    assert "No template dunning/email/missing_subject.txt" in response.content.decode()

    form.update({"steps-0-template": "reminder"})
    assert staff.post(url, form).status_code == 302
    saved = DunningPolicy.objects.get(name="Strict")
    assert list(saved.steps.values_list("code", flat=True)) == ["SOFT_D+1"]
    assert AuditEvent.objects.filter(action="dunning.policy_saved", target_id=str(saved.pk)).exists()
