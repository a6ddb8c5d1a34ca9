"""POST /api/billing/checkout: validation writes nothing, coming-soon plans, Stripe failures keep the attempt."""
import pytest

from billing_console.models import AuditEvent, CheckoutAttempt
from tests.core.factories import CustomerFactory
from billing_console.stripe.gateway import client as stripe_api

pytestmark = pytest.mark.django_db
URL = "/api/billing/checkout"


def post(client, payload, **kwargs):
    return client.post(URL, payload, content_type="application/json", **kwargs)


@pytest.mark.parametrize("payload, field", [
    ({"plan": "pro"}, "email"),
    ({"email": "not-an-email", "plan": "pro"}, "email"),
    ({"email": ["a@example.com"], "plan": "pro"}, "email"),
    ({"email": "a@example.com"}, "plan"),
    ({"email": "a@example.com", "plan": "gold"}, "plan"),
    ({"email": "a@example.com", "plan": 7}, "plan"),
    ({"email": "a@example.com", "price": "price_not_ours"}, "price"),
    ({"email": "a@example.com", "plan": "pro", "price": "price_sandbox_team"}, "price"),
    ({"email": "a@example.com", "plan": "pro", "device_id": "bad id with spaces"}, "device_id"),
    ({"email": "a" * 250 + "@example.com", "plan": "pro"}, "email"),
    ({"email": "ünï@example.com\u0000", "plan": "pro"}, "email"),
])
def test_bad_input_is_400_with_the_field_and_writes_nothing(client, stripe_settings, payload, field):
    response = post(client, payload)
    assert response.status_code == 400
    body = response.json()["error"]
    assert body["code"] == "INVALID_INPUT" and field in body["fields"]
    assert not CheckoutAttempt.objects.exists() and not AuditEvent.objects.exists()


@pytest.mark.parametrize("raw", [b"", b"{", b"[]", b'"text"', b"null"])
def test_body_that_is_not_a_json_object_is_400(client, stripe_settings, raw):
    response = client.post(URL, data=raw, content_type="application/json")
    assert response.status_code == 400
    assert not CheckoutAttempt.objects.exists()


def test_plan_without_a_price_is_coming_soon(client, stripe_settings):
    stripe_settings.PLANS = {**stripe_settings.PLANS, "team": {**stripe_settings.PLANS["team"], "price_id": ""}}
    response = post(client, {"email": "a@example.com", "plan": "team"})
    assert response.status_code == 409
    assert response.json()["error"]["code"] == "PLAN_NOT_AVAILABLE"
    assert "coming soon" in response.json()["error"]["message"]
    assert not CheckoutAttempt.objects.exists()


def test_get_is_not_allowed(client):
    assert client.get(URL).status_code == 405


def test_checkout_by_price_stores_the_attempt_encrypted_and_opens_a_session(client, emulator):
    response = post(client, {"email": "Ada@Example.com", "price": "price_sandbox_team", "deviceId": "dev-42"})
    assert response.status_code == 200
    attempt = CheckoutAttempt.objects.get(pk=response.json()["attemptId"])
    assert (attempt.plan, attempt.price_id, attempt.device_id) == ("team", "price_sandbox_team", "dev-42")
    assert attempt.recovery_email == "ada@example.com" and "ada@example.com" not in attempt.recovery_email_encrypted
    assert attempt.email_hint == "a***@example.com"
    session = emulator.get(attempt.stripe_session_id)
    assert session["customer_email"] == "ada@example.com"
    assert session["metadata"] == {"checkout_token": attempt.token, "plan": "team", "device_id": "dev-42"}
    posts = [r for r in emulator.requests if r["method"] == "POST"]
    assert len(posts) == 1


def test_returning_customer_checks_out_as_their_stripe_customer(client, emulator):
    stripe_customer = stripe_api().v1.customers.create(params={"email": "back@example.com"})
    CustomerFactory(email="back@example.com", stripe_customer_id=stripe_customer["id"])
    response = post(client, {"email": "back@example.com", "plan": "pro"})
    attempt = CheckoutAttempt.objects.get(pk=response.json()["attemptId"])
    assert emulator.get(attempt.stripe_session_id)["customer"] == stripe_customer["id"]


def test_stripe_down_answers_502_and_keeps_the_attempt_for_support(client, emulator):
    emulator.set_faults(api_500=5)
    response = post(client, {"email": "a@example.com", "plan": "pro"})
    assert response.status_code == 502
    error = response.json()["error"]
    assert error["code"] == "STRIPE_ERROR" and "try again" in error["message"]
    attempt = CheckoutAttempt.objects.get(pk=error["attemptId"])
    assert attempt.status == CheckoutAttempt.Status.PENDING and attempt.stripe_session_id is None
    assert AuditEvent.objects.filter(action="checkout.stripe_failed", target_id=str(attempt.pk)).exists()
    assert "sk_test" not in response.content.decode()


def test_one_transient_500_is_retried_with_the_same_idempotency_key(client, emulator):
    emulator.set_faults(api_500=1)
    response = post(client, {"email": "a@example.com", "plan": "pro"})
    assert response.status_code == 200
    assert len(emulator.list_objects("checkout.session")) == 1


def test_bad_api_key_gives_a_clear_message_without_the_key(client, emulator, stripe_settings):
    stripe_settings.STRIPE_SECRET_KEY = "rk_live_" + "x" * 30
    response = post(client, {"email": "a@example.com", "plan": "pro"})
    assert response.status_code == 502
    message = response.json()["error"]["message"]
    assert "STRIPE_SECRET_KEY" in message and "rk_live" not in message and "xxxx" not in message
