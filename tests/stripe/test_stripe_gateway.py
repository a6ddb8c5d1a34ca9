"""The gateway against the emulator: retries with the same idempotency key, timeouts, clear errors, paging."""
import pytest

from billing_console.stripe import gateway as stripe_gateway
from billing_console.stripe.gateway import StripeGatewayError

pytestmark = pytest.mark.django_db


def session_params(**extra):
    return {"mode": "subscription", "line_items": [{"price": "price_sandbox_pro", "quantity": 1}],
            "success_url": "https://console.test/ok", "customer_email": "g@example.com", **extra}


def test_repeating_a_post_with_its_key_returns_the_first_answer(emulator):
    first = stripe_gateway.checkout_session_create(params=session_params(), idempotency_key="bc-checkout-same")
    again = stripe_gateway.checkout_session_create(params=session_params(), idempotency_key="bc-checkout-same")
    assert first["id"] == again["id"] and len(emulator.list_objects("checkout.session")) == 1


def test_every_post_needs_an_idempotency_key(emulator):
    with pytest.raises(ValueError):
        stripe_gateway.checkout_session_create(params=session_params(), idempotency_key="")


def test_timeouts_become_a_retryable_network_error(emulator, stripe_settings):
    stripe_settings.STRIPE_TIMEOUT_SECONDS = 0.3
    stripe_settings.STRIPE_MAX_RETRIES = 0
    emulator.set_faults(api_timeout=1, timeout_seconds=1)
    with pytest.raises(StripeGatewayError) as caught:
        stripe_gateway.customer_retrieve("cus_whatever")
    assert caught.value.code == "network" and caught.value.retryable


def test_missing_object_is_not_found(emulator):
    with pytest.raises(StripeGatewayError) as caught:
        stripe_gateway.subscription_retrieve("sub_missing")
    assert caught.value.code == "not_found" and "sub_missing" in caught.value.message


def test_invalid_request_message_is_stripes_without_secrets(emulator, stripe_settings):
    with pytest.raises(StripeGatewayError) as caught:
        stripe_gateway.checkout_session_create(params={"mode": "subscription"}, idempotency_key="bc-bad")
    assert caught.value.code == "parameter_missing" and "success_url" in caught.value.message
    assert stripe_settings.STRIPE_SECRET_KEY not in caught.value.message


def test_not_configured_is_a_clear_error(stripe_settings):
    stripe_settings.STRIPE_SECRET_KEY = ""
    with pytest.raises(StripeGatewayError, match="STRIPE_SECRET_KEY is not set"):
        stripe_gateway.customer_retrieve("cus_1")


def test_lists_follow_every_page(emulator):
    for i in range(102):
        stripe_gateway.client().v1.customers.create(params={"email": f"c{i}@example.com"})
    assert len(list(stripe_gateway.events_list({"type": "customer.created"}))) == 102
    page = stripe_gateway.list_page("customers", {"limit": 3})
    assert len(page["data"]) == 3 and page["has_more"]
    with pytest.raises(ValueError):
        stripe_gateway.list_page("charges", {})
