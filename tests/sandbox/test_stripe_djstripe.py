"""dj-stripe 2.11 accepts what the Stripe sandbox serves: its event processing re-reads every object
from the emulator (with the `expand` values it asks for) and syncs it into its models."""
import pytest
import stripe
from djstripe import models as djstripe_models

from sandbox.stripe import StripeEmulator

API_KEY = "sk_test_" + "Sandbox0123456789abcdefgh"

pytestmark = pytest.mark.django_db


@pytest.fixture
def emu(settings, monkeypatch):
    with StripeEmulator() as emulator:
        monkeypatch.setattr(stripe, "api_base", emulator.url)  # what STRIPE_API_HOST does
        settings.STRIPE_SECRET_KEY = settings.STRIPE_TEST_SECRET_KEY = API_KEY
        settings.STRIPE_LIVE_MODE = False
        yield emulator


def process_events(emu, start=0):
    """Apply events the way dj-stripe's webhook processing does (Event.process re-reads objects)."""
    for event in emu.events[start:]:
        djstripe_models.Event.process(data=event, api_key=API_KEY)
    return len(emu.events)


def checkout(emu):
    api = stripe.StripeClient(API_KEY, base_addresses={"api": emu.url}, max_network_retries=0)
    session = api.v1.checkout.sessions.create(params={
        "mode": "subscription", "line_items": [{"price": "price_sandbox_pro", "quantity": 1}],
        "customer_email": "ada@example.com", "client_reference_id": "tok",
        "subscription_data": {"metadata": {"attempt": "tok"}},
        "success_url": "https://console.test/thanks", "cancel_url": "https://console.test/pricing"})
    result = emu.pay_checkout(session.id)
    assert result["ok"]
    return session, result


def test_djstripe_processes_every_checkout_event_against_the_sandbox(emu):
    session, result = checkout(emu)
    process_events(emu)

    assert djstripe_models.Account.objects.get().id == "acct_sandbox"
    customer = djstripe_models.Customer.objects.get(id=result["customer"])
    assert customer.email == "ada@example.com"
    sub = djstripe_models.Subscription.objects.get(id=result["subscription"])
    assert sub.status == "active" and sub.customer == customer
    assert sub.current_period_end > sub.current_period_start
    assert sub.stripe_data["metadata"] == {"attempt": "tok"}
    assert sub.items.get().price.id == "price_sandbox_pro"
    invoice = djstripe_models.Invoice.objects.get(id=result["invoice"])
    assert invoice.status == "paid" and invoice.subscription == sub and invoice.total == 900
    assert djstripe_models.Session.objects.get(id=session.id).stripe_data["payment_status"] == "paid"
    assert djstripe_models.PaymentMethod.objects.get(customer=customer).stripe_data["card"]["last4"] == "4242"
    assert djstripe_models.Price.objects.get(id="price_sandbox_pro").product.name == "Billing Console Pro"
    assert djstripe_models.Event.objects.count() == len(emu.events)


def test_djstripe_follows_a_failed_renewal_to_cancellation(emu):
    _, result = checkout(emu)
    seen = process_events(emu)
    emu.set_card(result["customer"], "decline")
    emu.advance(days=31)
    seen = process_events(emu, seen)
    sub = djstripe_models.Subscription.objects.get(id=result["subscription"])
    assert sub.status == "past_due"
    emu.advance(days=8)
    process_events(emu, seen)
    sub.refresh_from_db()
    assert sub.status == "canceled"
    failed = djstripe_models.Invoice.objects.get(id=sub.stripe_data["latest_invoice"])
    assert failed.status == "uncollectible"


def test_djstripe_sync_from_stripe_data_accepts_expanded_retrievals(emu):
    _, result = checkout(emu)
    stripe.api_key = API_KEY
    try:
        invoice = stripe.Invoice.retrieve(result["invoice"], expand=djstripe_models.Invoice.expand_fields)
        assert djstripe_models.Invoice.sync_from_stripe_data(invoice, api_key=API_KEY).status == "paid"
        customer = stripe.Customer.retrieve(result["customer"], expand=djstripe_models.Customer.expand_fields)
        assert djstripe_models.Customer.sync_from_stripe_data(customer, api_key=API_KEY).email == "ada@example.com"
    finally:
        stripe.api_key = None
