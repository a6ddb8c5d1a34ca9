"""Checkout end to end against the Stripe emulator: the API opens a real session, the emulator's
hosted checkout pays or declines, and its signed events go through the webhook view and the worker."""
import pytest
from django.core import mail

from billing_console.manage_links import manage_link_read
from billing_console.models import AuditEvent, CheckoutAttempt, Customer, WebhookEvent
from billing_console.selectors import Reason, customer_entitlement

pytestmark = pytest.mark.django_db


def start_checkout(client, email="ada@example.com", plan="pro", **extra):
    response = client.post("/api/billing/checkout", {"email": email, "plan": plan, **extra},
                           content_type="application/json")
    assert response.status_code == 200, response.content
    body = response.json()
    attempt = CheckoutAttempt.objects.get(pk=body["attemptId"])
    return attempt, body["url"]


def test_paying_with_4242_makes_an_entitled_customer_and_emails_the_manage_link(client, emulator, deliver):
    attempt, url = start_checkout(client, device_id="device-1")
    session = emulator.get(attempt.stripe_session_id)
    assert url == session["url"] and session["client_reference_id"] == attempt.token
    assert session["metadata"]["checkout_token"] == attempt.token

    result = emulator.pay_checkout(attempt.stripe_session_id, card="4242 4242 4242 4242", name="Ada Lovelace")
    assert result["ok"], result
    deliver(emulator.events)

    attempt.refresh_from_db()
    customer = Customer.objects.get(email="ada@example.com")
    assert attempt.status == CheckoutAttempt.Status.PAID and attempt.customer == customer
    assert customer.stripe_customer_id == result["customer"]
    assert customer.subscription_id == result["subscription"]
    assert (customer.subscription_status, customer.plan, customer.price_id) == ("active", "pro", "price_sandbox_pro")
    sub = emulator.get(result["subscription"])
    assert int(customer.current_period_end.timestamp()) == sub["items"]["data"][0]["current_period_end"]
    assert sub["metadata"]["checkout_token"] == attempt.token  # what rebuild_from_stripe reads later
    ent = customer_entitlement(customer)
    assert ent.entitled and ent.reason == Reason.VALID

    manage_emails = [m for m in mail.outbox if "/manage/" in m.body]  # other apps email too (licence key)
    assert len(manage_emails) == 1
    message = manage_emails[0]
    assert message.to == ["ada@example.com"]
    link = next(word for word in message.body.split() if "/manage/" in word)
    assert manage_link_read(link.rsplit("/manage/", 1)[1].strip("/")) == customer
    assert not WebhookEvent.objects.exclude(status__in=[WebhookEvent.Status.PROCESSED,
                                                        WebhookEvent.Status.IGNORED]).exists()


def test_declined_card_0341_pays_nothing_and_leaves_the_attempt_pending(client, emulator, deliver):
    attempt, _ = start_checkout(client)
    result = emulator.pay_checkout(attempt.stripe_session_id, card="4000 0000 0000 0341")
    assert not result["ok"] and "declined" in result["error"]
    deliver(emulator.events)

    attempt.refresh_from_db()
    assert attempt.status == CheckoutAttempt.Status.PENDING
    assert not Customer.objects.exists()
    assert mail.outbox == []


def test_expired_session_abandons_the_attempt_and_sends_one_follow_up(client, emulator, deliver):
    attempt, _ = start_checkout(client, email="Grace@Example.com")
    emulator.advance(hours=25)
    expired = [e for e in emulator.events if e["type"] == "checkout.session.expired"]
    assert len(expired) == 1
    deliver(expired)
    deliver(expired)  # a duplicate delivery

    attempt.refresh_from_db()
    assert attempt.status == CheckoutAttempt.Status.ABANDONED
    assert attempt.follow_up_status == CheckoutAttempt.FollowUp.SENT and attempt.follow_up_sent_at
    assert len(mail.outbox) == 1
    assert mail.outbox[0].to == ["grace@example.com"]
    assert "https://console.test/" in mail.outbox[0].body
    assert AuditEvent.objects.filter(action="checkout.abandoned").count() == 1
    assert WebhookEvent.objects.get(type="checkout.session.expired").deliveries == 2
