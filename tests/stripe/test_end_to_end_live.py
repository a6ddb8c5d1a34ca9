"""The whole flow over real HTTP: the console under live_server, the Stripe emulator delivering its
signed webhooks to /api/billing/webhook (with every event duplicated), dj-stripe's mirror on."""
import json
import urllib.parse
import urllib.request

import pytest

from billing_console.models import CheckoutAttempt, Customer, WebhookEvent
from billing_console.selectors import Reason, customer_entitlement
from sandbox.stripe import StripeEmulator
from tests.stripe.conftest import WEBHOOK_SECRET, wait_for


@pytest.fixture
def live_emulator(stripe_settings, live_server, monkeypatch):
    import stripe

    emu = StripeEmulator(webhook_url=live_server.url + "/api/billing/webhook", webhook_secret=WEBHOOK_SECRET,
                         webhook_retry_seconds=0.1)
    emu.start()
    stripe_settings.STRIPE_API_HOST = emu.url
    stripe_settings.STRIPE_DJSTRIPE_SYNC = ["*"]
    monkeypatch.setattr(stripe, "api_base", emu.url)
    yield emu
    emu.stop()


def http_post_json(url, payload):
    request = urllib.request.Request(url, data=json.dumps(payload).encode(), method="POST",
                                     headers={"Content-Type": "application/json"})
    with urllib.request.urlopen(request, timeout=20) as response:
        return response.status, json.load(response)


def pay_on_hosted_page(url, card):
    data = urllib.parse.urlencode({"email": "live@example.com", "card": card, "exp": "12 / 34", "cvc": "123",
                                   "name": "Live Buyer"}).encode()

    class NoRedirect(urllib.request.HTTPRedirectHandler):
        def redirect_request(self, *args, **kwargs):
            return None

    try:
        with urllib.request.build_opener(NoRedirect).open(urllib.request.Request(url, data=data), timeout=20) as r:
            return r.status
    except urllib.error.HTTPError as exc:
        return exc.code


@pytest.mark.django_db(transaction=True)
def test_buy_over_http_with_duplicated_webhooks_applies_everything_once(live_server, live_emulator):
    live_emulator.set_faults(duplicate=True)
    status, body = http_post_json(live_server.url + "/api/billing/checkout", {"email": "live@example.com", "plan": "pro"})
    assert status == 200
    assert pay_on_hosted_page(body["url"], "4242 4242 4242 4242") == 303

    emitted = len(live_emulator.events)
    assert live_emulator.wait_idle(30)
    assert wait_for(lambda: WebhookEvent.objects.filter(status__in=["processed", "ignored"]).count() == emitted, timeout=30)
    assert all(d["ok"] for d in live_emulator.deliveries)
    assert len(live_emulator.deliveries) == 2 * emitted
    assert set(WebhookEvent.objects.values_list("deliveries", flat=True)) == {2}
    assert not WebhookEvent.objects.exclude(last_error="").exists()  # dj-stripe synced every event cleanly

    customer = Customer.objects.get(email="live@example.com")
    assert customer_entitlement(customer).reason == Reason.VALID
    assert CheckoutAttempt.objects.get(pk=body["attemptId"]).status == "paid"

    from djstripe.models import Customer as DjCustomer, Subscription as DjSubscription
    assert DjCustomer.objects.filter(id=customer.stripe_customer_id).exists()
    assert DjSubscription.objects.get(id=customer.subscription_id).status == "active"
