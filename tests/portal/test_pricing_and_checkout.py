import copy

import pytest

from billing_console.models import CheckoutAttempt

pytestmark = pytest.mark.django_db


def test_pricing_shows_one_tile_per_plan_and_coming_soon_without_a_price(client, settings):
    plans = copy.deepcopy(settings.PLANS)
    plans["pro"]["price_id"] = "price_sandbox_pro"
    plans["team"]["price_id"] = ""
    settings.PLANS = plans
    body = client.get("/").content.decode()
    assert 'id="plan-pro"' in body and 'id="plan-team"' in body
    assert "Subscribe to Pro" in body
    assert "Subscribe to Team" not in body
    assert "Coming soon" in body
    assert 'name="csrfmiddlewaretoken"' in body


def test_checkout_form_creates_an_attempt_and_redirects_to_stripe(client, emulator):
    response = client.post("/checkout", {"email": "Buyer@Example.com", "plan": "pro"})
    assert response.status_code == 303
    attempt = CheckoutAttempt.objects.get()
    assert attempt.plan == "pro" and attempt.recovery_email == "buyer@example.com"
    assert response["Location"].startswith(emulator.url + "/checkout/")
    assert attempt.stripe_session_id in response["Location"]


def test_checkout_form_shows_the_field_error_for_a_bad_email(client, stripe_settings):
    response = client.post("/checkout", {"email": "not-an-email", "plan": "pro"})
    assert response.status_code == 400
    assert "Enter a valid email address." in response.content.decode()
    assert not CheckoutAttempt.objects.exists()


def test_checkout_form_refuses_an_unknown_plan(client, stripe_settings):
    response = client.post("/checkout", {"email": "a@example.com", "plan": "gold"})
    assert response.status_code == 400
    assert "Unknown plan" in response.content.decode()
    assert not CheckoutAttempt.objects.exists()


def test_checkout_of_a_plan_without_price_says_coming_soon(client, stripe_settings):
    plans = copy.deepcopy(stripe_settings.PLANS)
    plans["team"]["price_id"] = ""
    stripe_settings.PLANS = plans
    response = client.post("/checkout", {"email": "a@example.com", "plan": "team"})
    assert response.status_code == 409
    assert "coming soon" in response.content.decode()


def test_checkout_when_stripe_is_down_shows_a_message_not_a_500(client, stripe_settings):
    stripe_settings.STRIPE_API_HOST = "http://127.0.0.1:9"  # nothing listens there
    response = client.post("/checkout", {"email": "a@example.com", "plan": "pro"})
    assert response.status_code == 502
    assert "Checkout could not be opened" in response.content.decode()
    assert CheckoutAttempt.objects.get().status == "pending"  # kept for support


def test_checkout_needs_csrf(stripe_settings):
    from django.test import Client

    response = Client(enforce_csrf_checks=True).post("/checkout", {"email": "a@example.com", "plan": "pro"})
    assert response.status_code == 403


def test_success_and_cancel_pages(client):
    assert "Thank you" in client.get("/checkout/success?session_id=cs_test_1").content.decode()
    assert "No payment was taken" in client.get("/checkout/cancel").content.decode()
