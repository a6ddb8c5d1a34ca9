"""Stand-ins for the ops drills: a Stripe emulator whose webhooks never arrive (the endpoint is down),
a fake Cloudflare, and helpers that buy subscriptions through the console's real checkout."""
import copy
import socket

import pytest
import stripe

from billing_console.stripe.checkout import checkout_start
from sandbox.cloudflare import FakeCloudflare
from sandbox.stripe import StripeEmulator

API_KEY = "sk_test_" + "OpsDrill0123456789abcdefghij"


@pytest.fixture(autouse=True)
def _tasks_run_inline(monkeypatch):
    """django-q2 reads Q_CLUSTER once at import, so the root conftest's sync=True does not reach async_task."""
    from django_q.conf import Conf

    monkeypatch.setattr(Conf, "SYNC", True)


def _dead_url() -> str:
    """A loopback URL nobody listens on: every webhook delivery fails, as with a broken endpoint."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    return f"http://127.0.0.1:{port}/api/billing/webhook"


@pytest.fixture
def stripe_settings(settings):
    settings.STRIPE_SECRET_KEY = API_KEY
    settings.STRIPE_WEBHOOK_SECRET = "whsec_" + "opsDrillSecret0123456789"
    settings.STRIPE_MAX_RETRIES = 0
    settings.STRIPE_TIMEOUT_SECONDS = 5
    settings.STRIPE_DJSTRIPE_SYNC = []
    settings.SITE_URL = "https://console.test"
    plans = copy.deepcopy(settings.PLANS)
    plans["pro"]["price_id"] = "price_sandbox_pro"
    plans["team"]["price_id"] = "price_sandbox_team"
    settings.PLANS = plans
    return settings


@pytest.fixture
def emulator(stripe_settings, monkeypatch):
    """Stripe, with the console's webhook endpoint unreachable: events pile up as not delivered."""
    emu = StripeEmulator(webhook_url=_dead_url(), webhook_secret=stripe_settings.STRIPE_WEBHOOK_SECRET,
                         webhook_max_attempts=1, webhook_retry_seconds=0.01, webhook_timeout_seconds=1)
    emu.start()
    stripe_settings.STRIPE_API_HOST = emu.url
    monkeypatch.setattr(stripe, "api_base", emu.url)
    yield emu
    emu.stop()


@pytest.fixture
def buy(emulator):
    """buy(email, plan) -> (stripe customer id, subscription id): a paid checkout through the console's API
    path and the emulator's hosted page; its webhooks fail to arrive."""

    def run(email: str, plan: str = "pro", name: str = "") -> tuple[str, str]:
        attempt, _ = checkout_start(email=email, plan=plan, price_id=f"price_sandbox_{plan}")
        result = emulator.pay_checkout(attempt.stripe_session_id, name=name or None)
        assert result["ok"], result
        assert emulator.wait_idle(10)
        return result["customer"], result["subscription"]

    return run


@pytest.fixture
def cloudflare(settings):
    fake = FakeCloudflare().start()
    settings.CLOUDFLARE_API_BASE = f"{fake.url}/client/v4"
    yield fake
    fake.stop()


# The support group's tests log in as the portal's support user.
from tests.portal.conftest import support_client, support_user  # noqa: E402,F401
