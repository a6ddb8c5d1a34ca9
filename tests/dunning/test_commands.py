"""The runbook's commands: dunning_send --subscription --step, dunning_retry --log."""
import re
from datetime import timedelta
from io import StringIO

import pytest
from django.core import mail
from django.core.management import CommandError, call_command
from django.utils import timezone

from billing_console.models import AuditEvent
from tests.dunning.factories import DunningCaseFactory, DunningStepLogFactory

pytestmark = pytest.mark.django_db


def run(*args):
    out = StringIO()
    call_command(*args, stdout=out)
    return out.getvalue()


def test_dunning_send_sends_the_step_now_and_prints_it(policy):
    case = DunningCaseFactory(opened_at=timezone.now() - timedelta(hours=2))
    out = run("dunning_send", "--subscription", case.subscription_id, "--step", "soft_d+3")
    row = case.step_logs.get()
    assert (row.step_code, row.status, row.manual) == ("SOFT_D+3", "sent", True)
    assert f"SOFT_D+3 via email to {case.customer.email}" in out and "sent" in out and f"log #{row.pk}" in out
    assert len(mail.outbox) == 1
    assert AuditEvent.objects.filter(action="dunning.step_send_requested", actor="manage.py dunning_send").exists()


def test_dunning_send_refuses_a_step_already_sent(policy):
    case = DunningCaseFactory()
    DunningStepLogFactory(case=case, step_code="SOFT_D+3", status="sent", sent_at=timezone.now())
    with pytest.raises(CommandError, match="already sent"):
        run("dunning_send", "--subscription", case.subscription_id, "--step", "SOFT_D+3")
    assert mail.outbox == []


@pytest.mark.parametrize("subscription, step, message", [
    ("sub_unknown", "SOFT_D+3", "No dunning case for subscription 'sub_unknown'"),
    (None, "SOFT_D+99", "Unknown step 'SOFT_D+99'"),
])
def test_dunning_send_bad_input_is_a_clear_error(policy, subscription, step, message):
    case = DunningCaseFactory()
    with pytest.raises(CommandError, match=re.escape(message)):
        run("dunning_send", "--subscription", subscription or case.subscription_id, "--step", step)
    assert not case.step_logs.exists()


def test_dunning_send_without_arguments_sends_what_fell_due(policy):
    case = DunningCaseFactory(opened_at=timezone.now() - timedelta(days=3, hours=1))
    out = run("dunning_send")
    assert "sent: 1" in out
    assert case.step_logs.get(step_code="SOFT_D+3").status == "sent"
    assert len(mail.outbox) == 1


def test_dunning_send_with_only_one_of_subscription_and_step_is_refused(policy):
    case = DunningCaseFactory()
    with pytest.raises(CommandError, match="Give both --subscription and --step, or neither"):
        run("dunning_send", "--subscription", case.subscription_id)
    assert not case.step_logs.exists()


def test_dunning_send_on_a_closed_case_is_refused(policy):
    case = DunningCaseFactory(status="recovered")
    with pytest.raises(CommandError, match="no open dunning case"):
        run("dunning_send", "--subscription", case.subscription_id, "--step", "SOFT_D+3")


def test_dunning_retry_resends_a_failed_step_with_fresh_attempts(policy, settings):
    row = DunningStepLogFactory(case=DunningCaseFactory(), status="failed", attempts=settings.DUNNING_MAX_ATTEMPTS,
                                reason="email_error")
    out = run("dunning_retry", "--log", str(row.pk))
    row.refresh_from_db()
    assert (row.status, row.attempts, row.manual, row.reason) == ("sent", 1, True, "")
    assert "sent" in out and len(mail.outbox) == 1
    event = AuditEvent.objects.get(action="dunning.step_retry_requested")
    assert event.data["previous"] == {"status": "failed", "reason": "email_error", "attempts": settings.DUNNING_MAX_ATTEMPTS}


@pytest.mark.parametrize("log_id", ["999999", "abc"])
def test_dunning_retry_unknown_log_is_a_clear_error(db, log_id):
    with pytest.raises(CommandError, match="No dunning step log with id"):
        run("dunning_retry", "--log", log_id)


def test_dunning_retry_of_a_sent_step_is_refused(policy):
    row = DunningStepLogFactory(case=DunningCaseFactory(), status="sent", sent_at=timezone.now())
    with pytest.raises(CommandError, match="only failed or skipped"):
        run("dunning_retry", "--log", str(row.pk))
    assert mail.outbox == []
