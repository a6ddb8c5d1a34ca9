"""The dunning task: queue due steps, send each once, retry with backoff, record before and after."""
from datetime import timedelta

import pytest
from django.core import mail

from billing_console.models import AuditEvent
from dunning.models import DunningCase, DunningStepLog
from dunning.sending import dunning_run, dunning_steps_send
from dunning.services import dunning_case_close
from tests.dunning.factories import DunningCaseFactory, DunningPolicyFactory, DunningStepFactory, DunningStepLogFactory

pytestmark = pytest.mark.django_db


def email_policy(*offsets):
    policy = DunningPolicyFactory()
    for offset in offsets:
        DunningStepFactory(policy=policy, code=f"D+{offset}", offset_days=offset)
    return policy


def test_a_step_is_queued_and_sent_on_its_day_and_not_before(t0):
    case = DunningCaseFactory(policy=email_policy(1, 3), opened_at=t0, next_step_at=t0 + timedelta(days=1))

    assert dunning_run(now=t0 + timedelta(hours=23))["sent"] == 0
    counts = dunning_run(now=t0 + timedelta(days=1, minutes=5))
    assert (counts["queued"], counts["sent"]) == (1, 1)
    row = case.step_logs.get()
    assert (row.step_code, row.status, row.attempts, row.sent_at) == ("D+1", "sent", 1, t0 + timedelta(days=1, minutes=5))
    assert row.provider_message_id.startswith("<") and len(mail.outbox) == 1
    case.refresh_from_db()
    assert case.next_step_at == t0 + timedelta(days=3)

    assert dunning_run(now=t0 + timedelta(days=2))["sent"] == 0  # nothing twice
    assert len(mail.outbox) == 1


def test_case_with_every_step_done_is_exhausted_once(t0):
    case = DunningCaseFactory(policy=email_policy(0), opened_at=t0, next_step_at=t0)
    counts = dunning_run(now=t0 + timedelta(minutes=1))
    assert counts["sent"] == 1 and counts["exhausted"] == 1
    case.refresh_from_db()
    assert (case.status, case.exhausted_at) == ("exhausted", t0 + timedelta(minutes=1))
    assert dunning_run(now=t0 + timedelta(days=1))["exhausted"] == 0
    assert AuditEvent.objects.filter(action="dunning.case_exhausted", target_id=str(case.pk)).count() == 1


def test_steps_overdue_together_send_only_the_latest(t0):
    case = DunningCaseFactory(policy=email_policy(0, 1, 3), opened_at=t0, next_step_at=t0)
    dunning_run(now=t0 + timedelta(days=4))  # the task did not run for four days
    assert dict(case.step_logs.values_list("step_code", "status")) == {"D+0": "skipped", "D+1": "skipped", "D+3": "sent"}
    assert set(case.step_logs.exclude(status="sent").values_list("reason", flat=True)) == {"superseded"}
    assert len(mail.outbox) == 1


def test_payment_between_queue_and_send_sends_nothing(t0):
    case = DunningCaseFactory(policy=email_policy(1), opened_at=t0, next_step_at=t0 + timedelta(days=1))
    from dunning.sending import dunning_steps_queue_due

    dunning_steps_queue_due(now=t0 + timedelta(days=1))
    assert case.step_logs.get().status == "queued"
    dunning_case_close(case=case, status="recovered", reason="recovered", actor_type="stripe", at=t0 + timedelta(days=1))

    assert dunning_steps_send(now=t0 + timedelta(days=1, minutes=1))["sent"] == 0
    assert mail.outbox == []
    assert case.step_logs.get().status == "skipped"


def test_claim_rechecks_the_case_even_if_a_queued_step_was_left_behind(t0):
    # A step still queued on a closed case (e.g. written by an older version) is never claimed.
    row = DunningStepLogFactory(case=DunningCaseFactory(opened_at=t0, status="recovered"), due_at=t0)
    assert dunning_steps_send(now=t0 + timedelta(days=1)) == {"sent": 0, "retry": 0, "failed": 0, "skipped": 0, "deferred": 0}
    row.refresh_from_db()
    assert row.status == "queued" and mail.outbox == []


def test_failed_email_is_retried_with_backoff_then_failed_for_support(t0, settings, monkeypatch):
    settings.DUNNING_MAX_ATTEMPTS = 3
    settings.DUNNING_RETRY_BASE_SECONDS = 60
    calls = []

    def broken_send(self, *args, **kwargs):
        calls.append(1)
        raise ConnectionRefusedError("SMTP server down")

    monkeypatch.setattr("django.core.mail.backends.locmem.EmailBackend.send_messages", broken_send)
    row = DunningStepLogFactory(case=DunningCaseFactory(opened_at=t0, next_step_at=None), due_at=t0)

    dunning_steps_send(now=t0)
    row.refresh_from_db()
    assert (row.status, row.attempts, row.reason, row.next_retry_at) == ("queued", 1, "email_error", t0 + timedelta(seconds=60))
    assert dunning_steps_send(now=t0 + timedelta(seconds=30))["retry"] == 0  # not yet
    dunning_steps_send(now=t0 + timedelta(seconds=60))
    row.refresh_from_db()
    assert (row.status, row.attempts, row.next_retry_at) == ("queued", 2, t0 + timedelta(seconds=180))
    dunning_steps_send(now=t0 + timedelta(seconds=180))
    row.refresh_from_db()
    assert (row.status, row.attempts, row.next_retry_at) == ("failed", 3, None)
    assert "gave up after 3 attempts" in row.detail and "SMTP server down" in row.detail
    assert len(calls) == 3
    assert dunning_steps_send(now=t0 + timedelta(days=1))["failed"] == 0


def test_step_left_sending_by_a_dead_worker_is_failed_not_resent(t0, settings):
    settings.DUNNING_SENDING_STALE_MINUTES = 30
    row = DunningStepLogFactory(case=DunningCaseFactory(opened_at=t0, next_step_at=None), due_at=t0, status="sending",
                                attempts=1, last_attempt_at=t0)
    assert dunning_run(now=t0 + timedelta(minutes=10))["stale"] == 0
    assert dunning_run(now=t0 + timedelta(minutes=31))["stale"] == 1
    row.refresh_from_db()
    assert (row.status, row.reason) == ("failed", "outcome_unknown")
    assert mail.outbox == []


def test_missing_template_fails_the_step_with_the_reason(t0):
    row = DunningStepLogFactory(case=DunningCaseFactory(opened_at=t0, next_step_at=None), due_at=t0, template="nope")
    dunning_steps_send(now=t0)
    row.refresh_from_db()
    assert (row.status, row.reason) == ("failed", "template_error")


def test_queries_per_run_do_not_grow_with_cases(t0, django_assert_max_num_queries, settings):
    settings.DUNNING_BATCH_SIZE = 50
    policy = email_policy(1)
    for _ in range(40):
        DunningCaseFactory(policy=policy, opened_at=t0, next_step_at=t0 + timedelta(days=1))
    with django_assert_max_num_queries(20):  # one batch: constant, whatever the case count
        counts = dunning_run(now=t0 + timedelta(days=1))
    assert counts["sent"] == 40 and len(mail.outbox) == 40
    assert DunningStepLog.objects.filter(status="sent").count() == 40
    assert DunningCase.objects.filter(next_step_at__isnull=True).count() == 40
