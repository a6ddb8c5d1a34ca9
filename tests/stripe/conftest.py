"""Fixtures for the console's Stripe side: settings that point at a StripeEmulator on port 0, and
helpers that deliver the emulator's events to the webhook view signed as Stripe signs them."""
import copy
import json
import time

import pytest
import stripe

from sandbox.stripe import StripeEmulator, sign_payload

API_KEY = "sk_test_" + "Console0123456789abcdefghij"
WEBHOOK_SECRET = "whsec_" + "consoleTestSecret0123456789"
WEBHOOK_URL = "/api/billing/webhook"


@pytest.fixture
def stripe_settings(settings):
    """Keys, plans and a fast retry policy; dj-stripe's mirror is off unless a test turns it on."""
    settings.STRIPE_SECRET_KEY = API_KEY
    settings.STRIPE_WEBHOOK_SECRET = WEBHOOK_SECRET
    settings.STRIPE_MAX_RETRIES = 1
    settings.STRIPE_TIMEOUT_SECONDS = 5
    settings.STRIPE_DJSTRIPE_SYNC = []
    settings.SITE_URL = "https://console.test"
    settings.PRICING_URL = "https://console.test/"
    settings.BILLING_RETURN_URL = "https://console.test/"
    plans = copy.deepcopy(settings.PLANS)
    plans["pro"]["price_id"] = "price_sandbox_pro"
    plans["team"]["price_id"] = "price_sandbox_team"
    settings.PLANS = plans
    return settings


@pytest.fixture
def emulator(stripe_settings, monkeypatch):
    """A Stripe emulator that delivers nowhere: tests hand its events to the view themselves."""
    emu = StripeEmulator(webhook_retry_seconds=0.05)
    emu.start()
    stripe_settings.STRIPE_API_HOST = emu.url
    monkeypatch.setattr(stripe, "api_base", emu.url)  # dj-stripe's sync uses the global base
    yield emu
    emu.stop()


def signed_headers(body: bytes, secret: str = WEBHOOK_SECRET, timestamp: int | None = None) -> dict:
    return {"HTTP_STRIPE_SIGNATURE": sign_payload(body, secret, timestamp)}


@pytest.fixture
def post_event(client, django_capture_on_commit_callbacks):
    """post_event(event_dict_or_bytes) -> response; processing (on commit, Q sync) runs before it returns."""

    def post(event, *, secret: str = WEBHOOK_SECRET, timestamp: int | None = None, headers: dict | None = None):
        body = event if isinstance(event, bytes) else json.dumps(event).encode()
        extra = signed_headers(body, secret, timestamp) if headers is None else headers
        with django_capture_on_commit_callbacks(execute=True):
            return client.post(WEBHOOK_URL, data=body, content_type="application/json", **extra)

    return post


@pytest.fixture
def send(post_event):
    """send(event) -> the stored WebhookEvent after processing; the view must answer 200."""

    def run(evt):
        from billing_console.models import WebhookEvent

        response = post_event(evt)
        assert response.status_code == 200, response.content
        return WebhookEvent.objects.get(stripe_id=evt["id"])

    return run


@pytest.fixture
def deliver(post_event):
    """deliver(events) posts each event (a list of emulator events) in the given order; asserts 200."""

    def run(events):
        for event in events:
            response = post_event(event)
            assert response.status_code == 200, response.content

    return run


def events_since(emu, mark: int, types: tuple[str, ...] | None = None) -> list[dict]:
    events = emu.events[mark:]
    return [e for e in events if types is None or e["type"] in types]


def wait_for(predicate, timeout: float = 10.0, interval: float = 0.05):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(interval)
    return predicate()
