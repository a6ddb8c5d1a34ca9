from datetime import datetime, timezone

import pytest

from dunning.services import dunning_policy_ensure_default


@pytest.fixture
def policy(db):
    return dunning_policy_ensure_default()


@pytest.fixture
def t0():
    """A fixed moment for the first failure: every test drives time from it."""
    return datetime(2026, 3, 2, 9, 0, tzinfo=timezone.utc)



EVOLUTION_KEY = "evolution-test-key-6f1d2c"


@pytest.fixture
def evolution(settings):
    """A fake Evolution API on port 0, with the console's settings pointing at it."""
    from sandbox.whatsapp import FakeEvolution

    fake = FakeEvolution(api_key=EVOLUTION_KEY, instances=("billing",)).start()
    settings.EVOLUTION_API_URL = fake.url
    settings.EVOLUTION_API_KEY = EVOLUTION_KEY
    settings.EVOLUTION_INSTANCE = "billing"
    settings.EVOLUTION_TIMEOUT_SECONDS = 2
    yield fake
    fake.stop()


@pytest.fixture(autouse=True)
def _fresh_whatsapp_allowance():
    # The per-minute WhatsApp counters live in the cache; tests share fixed clock times.
    from django.core.cache import cache

    cache.clear()


# The console's Stripe fixtures (settings pointing at an emulator, signed delivery to the webhook view).
from tests.stripe.conftest import deliver, post_event, stripe_settings  # noqa: E402,F401


@pytest.fixture
def emulator(stripe_settings, monkeypatch):
    """The Stripe emulator with Stripe's retries on days 3, 5, 7, 15 and 20 after the first failure,
    so a renewal that fails stays past due beyond the hard lock (day 14) unless it is paid."""
    import stripe

    from sandbox.stripe import StripeEmulator

    emu = StripeEmulator(webhook_retry_seconds=0.05, retry_days=(3, 5, 7, 15, 20)).start()
    stripe_settings.STRIPE_API_HOST = emu.url
    monkeypatch.setattr(stripe, "api_base", emu.url)
    yield emu
    emu.stop()


@pytest.fixture
def subscriber(client, emulator, deliver, policy):
    """A customer who paid with 4242 through the console's checkout, every event applied, with a phone."""
    from billing_console.models import Customer
    from tests.stripe.test_checkout_flow import start_checkout

    attempt, _ = start_checkout(client, email="mia@example.com")
    assert emulator.pay_checkout(attempt.stripe_session_id)["ok"]
    deliver(emulator.events)
    customer = Customer.objects.get(email="mia@example.com")
    customer.phone = "+5511987654321"
    customer.save(update_fields=["phone"])
    return customer
