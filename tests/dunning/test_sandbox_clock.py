"""Dunning on the Stripe sandbox's clock (DUNNING_CLOCK=stripe_sandbox): advancing the sandbox makes the next
step fall due and the locks follow, while the wall clock stays where it is."""
import os
import subprocess
import sys
from datetime import datetime, timedelta, timezone

import pytest
from django.core import mail

from billing_console.models import Customer
from billing_console.stripe import dispatch as events
from billing_console.stripe.gateway import StripeGatewayError, sandbox_clock_now
from dunning import clock
from dunning.models import DunningStepLog
from dunning.sending import dunning_run
from dunning.services import dunning_enforce_access_policies
from tests.dunning.factories import DunningCustomerFactory, event, invoice_object

pytestmark = pytest.mark.django_db


@pytest.fixture
def sandbox(settings, monkeypatch):
    from sandbox.stripe import StripeEmulator

    emu = StripeEmulator().start()
    settings.STRIPE_API_HOST = emu.url
    settings.STRIPE_LIVE_MODE = False
    settings.DUNNING_CLOCK = "stripe_sandbox"
    monkeypatch.setattr(clock, "_offset", {})
    monkeypatch.setattr(clock, "OFFSET_CACHE_SECONDS", 0.0)  # every read asks the sandbox: no waiting in tests
    yield emu
    emu.stop()


def sandbox_now(emu) -> datetime:
    return datetime.fromtimestamp(emu.now(), tz=timezone.utc)


def fail_renewal(emu, customer):
    """The renewal fails a month ahead of the wall clock, as after `clock advance --days 31`."""
    emu.advance(days=31)
    events.dispatch(event("invoice.payment_failed", invoice_object(customer=customer, invoice_id="in_renew"),
                          at=sandbox_now(emu)))


def step_status(code):
    return DunningStepLog.objects.filter(step_code=code).values_list("status", flat=True).first()


def test_the_next_step_falls_due_when_the_sandbox_clock_moves(sandbox, policy, evolution):
    customer = DunningCustomerFactory()
    fail_renewal(sandbox, customer)
    dunning_run()
    assert step_status("FAIL_IMMEDIATE") == "sent" and step_status("SOFT_D+1") is None

    sandbox.advance(days=1, seconds=60)
    counts = dunning_run()
    assert step_status("SOFT_D+1") == "sent" and counts["sent"] == 1
    [message] = evolution.messages
    assert "is 1 day overdue" in message["text"]

    sandbox.advance(days=2)
    dunning_run()
    assert step_status("SOFT_D+3") == "sent"
    assert "is 3 days overdue" in mail.outbox[-1].body


def test_the_locks_follow_the_sandbox_clock(sandbox, policy):
    customer = DunningCustomerFactory()
    fail_renewal(sandbox, customer)
    customer.refresh_from_db()
    assert customer.access_state == Customer.AccessState.GRACE
    sandbox.advance(days=3, seconds=60)
    counts = dunning_enforce_access_policies()
    customer.refresh_from_db()
    assert counts["soft_locked"] == 1 and customer.access_state == Customer.AccessState.SOFT_LOCKED
    sandbox.advance(days=11)
    dunning_enforce_access_policies()
    customer.refresh_from_db()
    assert customer.access_state == Customer.AccessState.HARD_LOCKED


def test_on_the_wall_clock_a_sandbox_advance_changes_nothing(sandbox, settings, policy, evolution):
    settings.DUNNING_CLOCK = "wall"
    customer = DunningCustomerFactory()
    fail_renewal(sandbox, customer)
    sandbox.advance(days=4)
    dunning_run()
    dunning_enforce_access_policies()
    assert step_status("SOFT_D+1") is None and evolution.messages == []
    customer.refresh_from_db()
    assert customer.access_state == Customer.AccessState.GRACE


def test_an_unreachable_sandbox_falls_back_to_the_wall_clock(sandbox, caplog):
    sandbox.advance(days=10)
    sandbox.stop()
    before = datetime.now(timezone.utc)
    now = clock.dunning_now()
    assert before <= now <= datetime.now(timezone.utc)
    assert "Dunning uses the wall clock" in caplog.text


def test_the_offset_is_cached_briefly(sandbox, monkeypatch):
    monkeypatch.setattr(clock, "OFFSET_CACHE_SECONDS", 60.0)
    sandbox.advance(days=2)
    assert clock.dunning_now() > datetime.now(timezone.utc) + timedelta(days=2) - timedelta(minutes=1)
    sandbox.advance(days=5)
    assert clock.dunning_now() < datetime.now(timezone.utc) + timedelta(days=3)  # not asked again yet


def test_the_sandbox_clock_is_never_read_in_live_mode_or_without_a_sandbox(settings):
    settings.STRIPE_LIVE_MODE = True
    settings.STRIPE_API_HOST = "http://127.0.0.1:9"
    with pytest.raises(StripeGatewayError) as err:
        sandbox_clock_now()
    assert err.value.code == "not_sandbox"
    settings.STRIPE_LIVE_MODE = False
    del settings.STRIPE_API_HOST
    with pytest.raises(StripeGatewayError):
        sandbox_clock_now()


@pytest.mark.parametrize("extra,message", [
    ({"DUNNING_CLOCK": "stripe_sandbox", "STRIPE_API_HOST": "", "STRIPE_LIVE_MODE": "false"}, "needs STRIPE_API_HOST"),
    ({"DUNNING_CLOCK": "stripe_sandbox", "STRIPE_API_HOST": "http://127.0.0.1:9", "STRIPE_LIVE_MODE": "true"},
     "no live mode"),
    ({"DUNNING_CLOCK": "sundial"}, "use wall or stripe_sandbox"),
])
def test_the_settings_refuse_a_sandbox_clock_outside_the_sandbox(extra, message):
    env = {**os.environ, "DJANGO_SETTINGS_MODULE": "billing_console.settings", **extra}
    result = subprocess.run([sys.executable, "-c", "import django; django.setup()"], env=env, capture_output=True,
                            text=True, timeout=120)
    assert result.returncode != 0 and message in result.stderr


def test_a_reminder_on_its_first_day_says_it_is_due_not_zero_days_overdue(policy, t0, evolution):
    from dunning.sending import dunning_step_send_now
    from dunning.services import dunning_case_for_subscription

    customer = DunningCustomerFactory()
    events.dispatch(event("invoice.payment_failed", invoice_object(customer=customer, invoice_id="in_day0"), at=t0))
    case = dunning_case_for_subscription(customer.subscription_id)
    dunning_step_send_now(case=case, step_code="SOFT_D+1", actor_type="system", now=t0 + timedelta(hours=2))
    [message] = evolution.messages
    assert "is due today and not paid yet" in message["text"] and "0 days" not in message["text"]
