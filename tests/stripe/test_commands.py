"""setup_webhook_endpoint and sync_customer."""
import pytest
from django.core.management import CommandError, call_command

from billing_console.models import Customer
from tests.stripe.test_checkout_flow import start_checkout
from billing_console.stripe.gateway import client as stripe_api

pytestmark = pytest.mark.django_db


def test_setup_webhook_endpoint_creates_then_is_idempotent_then_updates(stripe_settings, capsys):
    from djstripe.models import WebhookEndpoint

    call_command("setup_webhook_endpoint")
    row = WebhookEndpoint.objects.get()
    assert row.url == "https://console.test/api/billing/webhook" and row.secret == stripe_settings.STRIPE_WEBHOOK_SECRET
    assert row.status == "enabled" and row.api_version == stripe_settings.STRIPE_API_VERSION
    out = capsys.readouterr().out
    assert "created" in out and stripe_settings.STRIPE_WEBHOOK_SECRET not in out

    call_command("setup_webhook_endpoint")
    assert "unchanged" in capsys.readouterr().out

    stripe_settings.SITE_URL = "https://billing.example.com"
    stripe_settings.STRIPE_WEBHOOK_SECRET = "whsec_test-rolled-secret-0123"
    call_command("setup_webhook_endpoint")
    assert "updated" in capsys.readouterr().out
    row = WebhookEndpoint.objects.get()
    assert (row.url, row.secret) == ("https://billing.example.com/api/billing/webhook", "whsec_test-rolled-secret-0123")


def test_setup_webhook_endpoint_without_secret_fails_clearly(stripe_settings):
    stripe_settings.STRIPE_WEBHOOK_SECRET = ""
    with pytest.raises(CommandError, match="STRIPE_WEBHOOK_SECRET"):
        call_command("setup_webhook_endpoint")


def test_sync_customer_by_email_applies_stripe_state(client, emulator, deliver, capsys):
    attempt, _ = start_checkout(client, email="sync@example.com")
    assert emulator.pay_checkout(attempt.stripe_session_id)["ok"]
    deliver(emulator.events)
    customer = Customer.objects.get(email="sync@example.com")
    stripe_api().v1.subscriptions.update(customer.subscription_id, params={"cancel_at_period_end": True})
    call_command("sync_customer", "SYNC@example.com")
    customer.refresh_from_db()
    assert customer.cancel_at_period_end
    assert "1 resynced, 0 failed" in capsys.readouterr().out


def test_sync_customer_unknown_is_an_error(stripe_settings):
    with pytest.raises(CommandError, match="No customer"):
        call_command("sync_customer", "nobody@example.com")
