"""Manage-link emails are tracked (status, attempts, last error) and retried with backoff; support sends one
from the customer page or the customer list, audited."""
from datetime import timedelta

import pytest

from billing_console.errors import ServiceError
from django.core import mail
from django.core.mail import EmailMultiAlternatives
from django.urls import reverse
from django.utils import timezone

from billing_console.manage_links import (manage_link_deliver, manage_link_deliver_due, manage_link_delivery_request,
                                          manage_link_read)
from billing_console.models import AuditEvent, Customer, ManageLinkDelivery
from billing_console.stripe import tasks
from tests.stripe.test_checkout_flow import start_checkout
from tests.core.factories import SubscribedCustomerFactory

pytestmark = pytest.mark.django_db
S = ManageLinkDelivery.Status


@pytest.fixture(autouse=True)
def _tasks_run_inline(monkeypatch):
    from django_q.conf import Conf

    monkeypatch.setattr(Conf, "SYNC", True)


@pytest.fixture
def smtp_down(monkeypatch):
    real = EmailMultiAlternatives.send

    def fail(self, *a, **k):
        raise ConnectionRefusedError("smtp down")

    monkeypatch.setattr(EmailMultiAlternatives, "send", fail)
    return lambda: monkeypatch.setattr(EmailMultiAlternatives, "send", real)


def link_in(message) -> str:
    return message.body.split("/manage/")[1].split("/")[0]


def test_checkout_records_a_delivery_and_the_link_works(client, emulator, deliver):
    attempt, _ = start_checkout(client)
    assert emulator.pay_checkout(attempt.stripe_session_id, card="4242424242424242")["ok"]
    deliver(emulator.events)
    customer = Customer.objects.get(email="ada@example.com")
    delivery = ManageLinkDelivery.objects.get(customer=customer)
    assert (delivery.reason, delivery.status, delivery.attempts, delivery.last_error) == ("checkout", S.SENT, 1, "")
    message = next(m for m in mail.outbox if "/manage/" in m.body)
    assert manage_link_read(link_in(message)) == customer


def test_a_failed_send_is_retried_with_backoff_then_sent(smtp_down, settings, django_capture_on_commit_callbacks):
    settings.MANAGE_LINK_DELIVERY_RETRY_BASE_SECONDS = 60
    customer = SubscribedCustomerFactory()
    with django_capture_on_commit_callbacks(execute=True):
        delivery = manage_link_delivery_request(customer=customer, reason="checkout", actor_type="stripe", actor="webhook")
    delivery.refresh_from_db()
    assert (delivery.status, delivery.attempts) == (S.PENDING, 1)
    assert "smtp down" in delivery.last_error
    first_wait = delivery.next_attempt_at - timezone.now()
    assert timedelta(seconds=50) < first_wait <= timedelta(seconds=60)
    assert manage_link_deliver_due()["due"] == 0  # not before its time

    ManageLinkDelivery.objects.filter(pk=delivery.pk).update(next_attempt_at=timezone.now())
    assert manage_link_deliver_due() == {"due": 1, "sent": 0, "retrying": 1, "failed": 0, "skipped": 0}
    delivery.refresh_from_db()
    assert timedelta(seconds=110) < delivery.next_attempt_at - timezone.now() <= timedelta(seconds=120)  # doubled

    smtp_down()  # back up
    ManageLinkDelivery.objects.filter(pk=delivery.pk).update(next_attempt_at=timezone.now())
    tasks.manage_link_delivery_retry()
    delivery.refresh_from_db()
    assert (delivery.status, delivery.attempts, delivery.last_error) == (S.SENT, 3, "")
    assert len(mail.outbox) == 1 and manage_link_read(link_in(mail.outbox[0])) == customer
    assert AuditEvent.objects.get(action="customer.manage_link_emailed").data["attempts"] == 3


def test_it_gives_up_after_the_last_attempt_and_says_so(smtp_down, settings):
    settings.MANAGE_LINK_DELIVERY_MAX_ATTEMPTS = 2
    customer = SubscribedCustomerFactory()
    delivery = ManageLinkDelivery.objects.create(customer=customer, reason="recover", next_attempt_at=timezone.now())
    manage_link_deliver(delivery_id=delivery.pk)
    ManageLinkDelivery.objects.filter(pk=delivery.pk).update(next_attempt_at=timezone.now())
    manage_link_deliver(delivery_id=delivery.pk)
    delivery.refresh_from_db()
    assert (delivery.status, delivery.attempts, delivery.next_attempt_at) == (S.FAILED, 2, None)
    assert AuditEvent.objects.get(action="customer.manage_link_failed").data["attempts"] == 2
    assert manage_link_deliver(delivery_id=delivery.pk) is None  # never again by itself


def test_a_claimed_or_sent_delivery_is_not_sent_twice():
    customer = SubscribedCustomerFactory()
    delivery = ManageLinkDelivery.objects.create(customer=customer, reason="recover", next_attempt_at=timezone.now())
    assert manage_link_deliver(delivery_id=delivery.pk).status == S.SENT
    assert manage_link_deliver(delivery_id=delivery.pk) is None
    assert len(mail.outbox) == 1


def test_an_unknown_reason_is_refused():
    with pytest.raises(ServiceError):
        manage_link_delivery_request(customer=SubscribedCustomerFactory(), reason="whatever", actor_type="admin")
    assert not ManageLinkDelivery.objects.exists()


def test_support_emails_a_fresh_link_from_the_list_and_the_page(admin_client, settings, django_capture_on_commit_callbacks):
    settings.PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]
    first, second = SubscribedCustomerFactory(), SubscribedCustomerFactory()
    with django_capture_on_commit_callbacks(execute=True):
        response = admin_client.post(reverse("admin:billing_console_customer_changelist"),
                                     {"action": "email_manage_link", "_selected_action": [first.pk, second.pk]})
    assert response.status_code == 302
    assert sorted(m.to[0] for m in mail.outbox) == sorted([first.email, second.email])
    page = admin_client.get(reverse("admin:billing_console_customer_change", args=[first.pk])).content.decode()
    assert "Email a fresh manage link" in page and "Manage link emails" in page
    with django_capture_on_commit_callbacks(execute=True):
        assert admin_client.post(reverse("admin:billing_console_customer_email_link", args=[first.pk])).status_code == 302
    assert len(mail.outbox) == 3
    requested = AuditEvent.objects.filter(action="customer.manage_link_requested", actor_type="admin")
    assert requested.count() == 3 and {e.data["reason"] for e in requested} == {"support"}
    # GET does not send.
    assert admin_client.get(reverse("admin:billing_console_customer_email_link", args=[first.pk])).status_code == 403
