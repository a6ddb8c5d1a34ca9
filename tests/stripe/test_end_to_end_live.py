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


@pytest.mark.django_db(transaction=True)
def test_the_sandbox_delivers_the_mirror_only_types_to_the_registered_endpoint(live_server, stripe_settings,
                                                                              monkeypatch, capsys):
    """The endpoint setup_webhook_endpoint registers (with the default mirror) gets charge.succeeded and
    payment_method.attached from the sandbox: the console stores them as ignored, dj-stripe's tables get them."""
    import stripe
    from django.core.management import call_command
    from djstripe import models as dj

    from tests.stripe.conftest import API_KEY
    from tests.stripe.test_commands import MIRROR_DEFAULT

    emu = StripeEmulator(webhook_retry_seconds=0.1)  # no endpoint of its own: only the one we register
    emu.start()
    try:
        stripe_settings.STRIPE_API_HOST = emu.url
        monkeypatch.setattr(stripe, "api_base", emu.url)
        stripe_settings.SITE_URL = live_server.url
        stripe_settings.STRIPE_DJSTRIPE_SYNC = MIRROR_DEFAULT
        call_command("setup_webhook_endpoint")
        [endpoint] = emu.list_objects("webhook_endpoint")
        stripe_settings.STRIPE_WEBHOOK_SECRET = emu.store.table("webhook_endpoint.secrets")[endpoint["id"]]
        capsys.readouterr()

        cus = stripe.Customer.create(email="mirror-live@example.com", payment_method="pm_card_visa",
                                     invoice_settings={"default_payment_method": "pm_card_visa"}, api_key=API_KEY)
        stripe.Subscription.create(customer=cus.id, items=[{"price": "price_sandbox_pro"}], api_key=API_KEY)
        assert emu.wait_idle(30)
        delivered = {d["event_id"] for d in emu.deliveries if d["ok"] and d["endpoint"] == endpoint["id"]}
        types = {e["id"]: e["type"] for e in emu.events}
        assert {"charge.succeeded", "payment_method.attached", "customer.created", "invoice.paid"} <= {
            types[i] for i in delivered}
        # What neither the console nor the mirror reads is not subscribed, so not sent.
        assert "payment_intent.succeeded" in types.values() and "payment_intent.succeeded" not in {
            types[i] for i in delivered}
        assert wait_for(lambda: WebhookEvent.objects.filter(stripe_id__in=delivered).exclude(mirror="due").count()
                        == len(delivered) and WebhookEvent.objects.filter(status__in=["processed", "ignored"]).count()
                        == len(delivered), timeout=30)
        charge_event = WebhookEvent.objects.get(type="charge.succeeded")
        assert (charge_event.status, charge_event.mirror, charge_event.last_error) == ("ignored", "done", "")
        assert not WebhookEvent.objects.filter(mirror="failed").exists()
        assert dj.Charge.objects.get(customer__id=cus.id).status == "succeeded"
        assert dj.PaymentMethod.objects.filter(customer__id=cus.id).exists()
        assert Customer.objects.get(email="mirror-live@example.com").subscription_status == "active"
    finally:
        emu.stop()
