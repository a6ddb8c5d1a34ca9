"""WhatsApp steps through the Evolution API client, against the fake Evolution API over real HTTP."""
from datetime import timedelta

import pytest

from dunning.models import DunningStepLog
from dunning.sending import dunning_steps_send
from sandbox._faults import DROP
from tests.dunning.conftest import EVOLUTION_KEY
from tests.dunning.factories import DunningCaseFactory, DunningStepLogFactory

pytestmark = pytest.mark.django_db


def whatsapp_step(t0, phone="+5511987654321", **kw):
    case = DunningCaseFactory(opened_at=t0, next_step_at=None, customer__phone=phone)
    return DunningStepLogFactory(case=case, channel="whatsapp", step_code="SOFT_D+1", due_at=t0, **kw)


def reload(row) -> DunningStepLog:
    row.refresh_from_db()
    return row


def test_whatsapp_step_is_sent_and_recorded_without_the_api_key(evolution, t0, caplog):
    row = whatsapp_step(t0)
    assert dunning_steps_send(now=t0)["sent"] == 1
    row = reload(row)
    [message] = evolution.messages
    assert (message["number"], message["instance"]) == ("5511987654321", "billing")
    assert "$9.00" in message["text"] and "/manage/" in message["text"]  # no hosted invoice: the manage page
    assert (row.status, row.attempts, row.provider_message_id) == ("sent", 1, message["id"])
    assert row.provider_response["status"] == 201
    assert EVOLUTION_KEY not in str(row.provider_response) + row.detail + caplog.text


@pytest.mark.parametrize("phone, reason", [("", "no_phone"), ("11987654321", "invalid_phone"),
                                           ("+5511", "invalid_phone"), ("+1555010", "invalid_phone")])
def test_missing_or_invalid_phone_skips_the_step_with_the_reason(evolution, t0, phone, reason):
    row = whatsapp_step(t0, phone=phone)
    assert dunning_steps_send(now=t0)["skipped"] == 1
    row = reload(row)
    assert (row.status, row.reason, row.attempts) == ("skipped", reason, 0)
    assert evolution.messages == []
    if phone:
        assert repr(phone) in row.detail  # support sees which number to fix


def test_disconnected_instance_is_retried_and_sent_once_reconnected(evolution, t0, settings):
    settings.DUNNING_RETRY_BASE_SECONDS = 300
    evolution.disconnect("billing")
    row = whatsapp_step(t0)
    assert dunning_steps_send(now=t0)["retry"] == 1
    row = reload(row)
    assert (row.status, row.reason, row.attempts, row.next_retry_at) == (
        "queued", "instance_disconnected", 1, t0 + timedelta(minutes=5))
    assert "reconnect" in row.detail and row.provider_response["status"] == 500

    evolution.connect("billing")
    assert dunning_steps_send(now=t0 + timedelta(minutes=5))["sent"] == 1
    row = reload(row)
    assert (row.status, row.attempts, row.reason) == ("sent", 2, "")
    assert len(evolution.messages) == 1


def test_provider_errors_are_retried_with_backoff_then_failed_for_support(evolution, t0, settings):
    settings.DUNNING_MAX_ATTEMPTS = 3
    settings.DUNNING_RETRY_BASE_SECONDS = 60
    evolution.fail_next(502, count=3)
    row = whatsapp_step(t0)
    waits = []
    now = t0
    for _ in range(3):
        dunning_steps_send(now=now)
        row = reload(row)
        if row.next_retry_at:
            waits.append(row.next_retry_at - now)
            now = row.next_retry_at
    assert waits == [timedelta(seconds=60), timedelta(seconds=120)]
    assert (row.status, row.reason, row.attempts) == ("failed", "provider_error", 3)
    assert "gave up after 3 attempts" in row.detail
    assert evolution.messages == []


@pytest.mark.parametrize("setup, reason", [
    (lambda fake: fake.fail_next(400), "message_rejected"),
    (lambda fake: fake.mark_not_on_whatsapp("+5511987654321"), "not_on_whatsapp"),
])
def test_rejected_messages_fail_at_once_with_a_distinct_reason(evolution, t0, setup, reason):
    setup(evolution)
    row = whatsapp_step(t0)
    assert dunning_steps_send(now=t0)["failed"] == 1
    row = reload(row)
    assert (row.status, row.reason, row.attempts, row.next_retry_at) == ("failed", reason, 1, None)
    assert row.provider_response["status"] == 400


def test_wrong_api_key_is_recorded_as_auth_failure_without_the_key(evolution, t0, settings, caplog):
    settings.EVOLUTION_API_KEY = "a-wrong-but-secret-key-999"
    row = whatsapp_step(t0)
    dunning_steps_send(now=t0)
    row = reload(row)
    assert (row.status, row.reason) == ("queued", "auth_failed")
    assert "a-wrong-but-secret-key-999" not in str(row.provider_response) + row.detail + caplog.text


def test_timeout_after_sending_is_failed_as_unknown_not_resent(evolution, t0, settings):
    settings.EVOLUTION_TIMEOUT_SECONDS = 0.3
    evolution.fail_next(DROP, delay=1.0)
    row = whatsapp_step(t0)
    dunning_steps_send(now=t0)
    row = reload(row)
    assert (row.status, row.reason) == ("failed", "outcome_unknown")
    assert dunning_steps_send(now=t0 + timedelta(days=1))["sent"] == 0


def test_provider_rate_limit_defers_without_using_an_attempt(evolution, t0):
    evolution.fail_next(429, retry_after=30)
    row = whatsapp_step(t0)
    assert dunning_steps_send(now=t0)["deferred"] == 1
    row = reload(row)
    assert (row.status, row.reason, row.attempts, row.next_retry_at) == ("queued", "rate_limited", 0, t0 + timedelta(seconds=30))
    dunning_steps_send(now=t0 + timedelta(seconds=30))
    assert reload(row).status == "sent"


def test_per_instance_rate_limit_spreads_sends_over_minutes(evolution, t0, settings):
    settings.DUNNING_WHATSAPP_PER_MINUTE = 2
    rows = [whatsapp_step(t0, phone=f"+55119876543{i:02d}") for i in range(3)]
    counts = dunning_steps_send(now=t0)
    assert (counts["sent"], counts["deferred"]) == (2, 1)
    deferred = [r for r in map(reload, rows) if r.status == "queued"]
    assert [r.next_retry_at for r in deferred] == [t0 + timedelta(seconds=60)]
    assert dunning_steps_send(now=t0 + timedelta(seconds=30))["sent"] == 0
    assert dunning_steps_send(now=t0 + timedelta(seconds=60))["sent"] == 1
    assert len(evolution.messages) == 3


def test_whatsapp_not_configured_skips_visibly(t0, settings):
    settings.EVOLUTION_API_URL = ""
    row = whatsapp_step(t0)
    dunning_steps_send(now=t0)
    assert (reload(row).status, reload(row).reason) == ("skipped", "whatsapp_not_configured")


def test_failed_whatsapp_step_retried_by_support_after_fixing_the_phone(evolution, t0):
    from django.core.management import call_command

    row = whatsapp_step(t0, phone="12345")
    dunning_steps_send(now=t0)
    assert reload(row).reason == "invalid_phone"
    customer = row.case.customer
    customer.phone = "+5511987654321"
    customer.save()
    call_command("dunning_retry", "--log", str(row.pk))
    assert reload(row).status == "sent" and len(evolution.messages) == 1


def test_the_stored_provider_response_holds_only_the_status_and_message_id(evolution, t0):
    """Evolution echoes the message text, which carries a working manage link: none of it is kept."""
    row = whatsapp_step(t0)
    assert dunning_steps_send(now=t0)["sent"] == 1
    row = reload(row)
    [message] = evolution.messages
    assert row.provider_response == {"status": 201, "message_id": message["id"]}
    assert "/manage/" not in str(row.provider_response) and message["text"] not in str(row.provider_response)


def test_a_rejected_message_keeps_only_the_status(evolution, t0):
    evolution.fail_next(400)
    row = whatsapp_step(t0)
    assert dunning_steps_send(now=t0)["failed"] == 1
    assert reload(row).provider_response == {"status": 400}


def test_the_migration_scrubs_stored_responses_down_to_status_and_message_id(t0):
    import importlib

    from django.apps import apps

    migration = importlib.import_module("dunning.migrations.0003_provider_response_status_only")
    echoed = {"status": 201, "body": {"key": {"id": "MSG1", "remoteJid": "5511@s.whatsapp.net"},
                                      "message": {"conversation": "Pay here: https://c.example/manage/1:a:b/"}}}
    sent = whatsapp_step(t0, provider_response=echoed)
    failed = DunningStepLogFactory(case=sent.case, channel="whatsapp", step_code="SOFT_D+7", due_at=t0,
                                   provider_response={"status": 500, "body": {"response": {"message": "Connection Closed"}}})
    empty = DunningStepLogFactory(case=sent.case, channel="email", step_code="FAIL_IMMEDIATE", due_at=t0)
    migration.scrub_provider_responses(apps, None)
    assert reload(sent).provider_response == {"status": 201, "message_id": "MSG1"}
    assert reload(failed).provider_response == {"status": 500}
    assert reload(empty).provider_response == {}
