"""DISPUTE_LOCKS_ACCESS: an open dispute pauses access and the customer is told the truth (manage page, the
manage-link email, the support console's customer page, the licence API); access returns when the dispute
closes. With the setting off (the default) the customer sees nothing of it and support sees the flag."""
import time
from datetime import datetime, timedelta, timezone as dt_timezone

import pytest
from django.core import mail
from django.utils import timezone

from billing_console.manage_links import manage_link_token
from billing_console.models import AuditEvent, Customer, Dispute, WebhookEvent
from billing_console.selectors import Reason, customer_entitlement
from billing_console.stripe.tasks import customer_manage_link_send
from billing_console.wording.subscription import State, day, subscription_copy
from dunning.services import dunning_enforce_access_policies
from tests.core.factories import SubscribedCustomerFactory
from tests.licensing.conftest import new_signing_key
from tests.licensing.factories import LicenseFactory
from tests.stripe.stripe_events import event, invoice, stripe_object

pytestmark = pytest.mark.django_db
HEADLINE = "Access paused: a payment is disputed"
PAUSED = "Access is paused until the dispute is resolved; it comes back by itself when the dispute is closed."
PAID_AT = int(datetime(2026, 11, 1, 12, tzinfo=dt_timezone.utc).timestamp())


@pytest.fixture
def send(post_event):
    def run(evt):
        response = post_event(evt)
        assert response.status_code == 200, response.content
        row = WebhookEvent.objects.get(stripe_id=evt["id"])
        assert row.status == WebhookEvent.Status.PROCESSED, (row.type, row.last_error)
        return row

    return run


@pytest.fixture
def customer(stripe_settings):
    stripe_settings.OPS_EMAIL = "ops@console.test"
    stripe_settings.SUPPORT_EMAIL = "help@console.test"
    stripe_settings.LICENSE_SIGNING_KEY, _ = new_signing_key()
    stripe_settings.LICENSE_VERIFY_KEYS_PREVIOUS = []
    return SubscribedCustomerFactory(stripe_customer_id="cus_disp", subscription_id="sub_disp",
                                     email="disp@example.com")


@pytest.fixture
def licence(customer, client):
    """A licence with one device activated while the customer was entitled."""
    lic = LicenseFactory(customer=customer)
    response = client.post("/api/license/activate", {"key": lic.key, "device_id": "mac-01"},
                           content_type="application/json")
    assert response.status_code == 201
    lic.token = response.json()["deviceAccessToken"]
    return lic


def dispute_opened(send, *, amount=900):
    send(event("invoice.paid", invoice(id="in_disp", customer="cus_disp", subscription_id="sub_disp", status="paid",
                                       status_transitions={"paid_at": PAID_AT, "finalized_at": PAID_AT,
                                                           "marked_uncollectible_at": None, "voided_at": None}),
               created=int(time.time()) - 100))
    dispute = stripe_object("dispute", id="dp_disp", amount=amount, currency="usd", reason="fraudulent",
                            status="needs_response",
                            charge={**stripe_object("charge"), "id": "ch_disp", "customer": "cus_disp",
                                    "invoice": "in_disp", "amount": 900})
    send(event("charge.dispute.created", dispute, created=int(time.time()) - 50))
    return dispute


def manage_page(client, customer) -> str:
    response = client.get(f"/manage/{manage_link_token(customer)}/")
    assert response.status_code == 200
    return " ".join(response.content.decode().replace("&#x27;", "'").split())


def manage_email(customer) -> str:
    mail.outbox.clear()
    customer_manage_link_send(customer_id=customer.pk, reason="recover")
    (message,) = [m for m in mail.outbox if customer.email in m.to]
    return message.body


def admin_page(admin_client, customer) -> str:
    response = admin_client.get(f"/admin/billing_console/customer/{customer.pk}/change/")
    assert response.status_code == 200
    return " ".join(response.content.decode().replace("&#x27;", "'").split())


def status_by_key(client, lic) -> dict:
    response = client.get("/api/license/status", {"device_id": "mac-01"}, HTTP_X_LICENSE_KEY=lic.key)
    assert response.status_code == 200
    return response.json()


@pytest.mark.parametrize("outcome", ["won", "lost"])
def test_with_the_setting_on_a_dispute_pauses_access_says_why_everywhere_and_ends_when_it_closes(
        customer, licence, send, stripe_settings, client, admin_client, outcome, django_assert_num_queries):
    stripe_settings.DISPUTE_LOCKS_ACCESS = True
    dispute = dispute_opened(send)
    customer.refresh_from_db()
    ent = customer_entitlement(customer)
    assert (ent.entitled, ent.reason) == (False, Reason.DISPUTED)
    # Not dunning's lock: the customer is not told to pay an invoice, and dunning's daily policy keeps it.
    assert customer.access_state == Customer.AccessState.ACTIVE
    dunning_enforce_access_policies(now=timezone.now() + timedelta(days=1))
    customer.refresh_from_db()
    assert customer_entitlement(customer).reason == Reason.DISPUTED

    paid_on = day(datetime.fromtimestamp(PAID_AT, tz=dt_timezone.utc))
    told = [HEADLINE, f"A payment of $9.00 on {paid_on} is disputed with your bank.", PAUSED,
            "If you did not mean to dispute it, contact support at help@console.test."]
    page = manage_page(client, customer)
    for words in told + ["Paused (payment disputed)", f"Disputed payment</dt><dd>$9.00 on {paid_on}"]:
        assert words in page, words
    for wrong in ("Next payment", "overdue", "Locked for non-payment", "Pro is active", "keep working"):
        assert wrong not in page, wrong

    email = manage_email(customer)
    for words in told + [f"Disputed payment: $9.00 on {paid_on}"]:
        assert words in email, words
    assert "Next payment" not in email

    admin = admin_page(admin_client, customer)
    for words in [HEADLINE, f"A payment of $9.00 on {paid_on} is disputed with your bank.",
                  "No - a payment is disputed and DISPUTE_LOCKS_ACCESS is on.", "<code>disputed</code>", "dp_disp"]:
        assert words in admin, words

    body = status_by_key(client, licence)
    assert (body["active"], body["status"], body["subscriptionState"], body["licenseStatus"]) == (
        False, "DISPUTED", "disputed", "Paused (payment disputed)")
    # The hot path reads no dispute row: the words without the amount.
    assert body["headline"] == HEADLINE
    assert body["message"] == ("A payment is disputed with your bank. " + PAUSED +
                               " If you did not mean to dispute it, contact support at help@console.test.")
    assert body["deviceAccessToken"] is None and body["entitlement"] is None
    with django_assert_num_queries(1):  # the device token call: still its one statement
        response = client.get("/api/license/status", HTTP_AUTHORIZATION=f"Bearer {licence.token}")
    assert response.json()["status"] == "DISPUTED"

    if outcome == "won":
        send(event("charge.dispute.updated", {**dispute, "status": "under_review"}, created=int(time.time()) - 20))
        send(event("charge.dispute.closed", {**dispute, "status": "won"}, created=int(time.time()) - 10))
        send(event("charge.dispute.funds_reinstated", {**dispute, "status": "won"}))
    else:
        send(event("charge.dispute.closed", {**dispute, "status": "lost"}, created=int(time.time()) - 10))
    customer.refresh_from_db()
    assert Dispute.objects.get(stripe_id="dp_disp").outcome == outcome and not customer.dispute_open
    assert customer_entitlement(customer).reason == Reason.VALID
    assert AuditEvent.objects.filter(action=f"dispute.{outcome}").exists()
    page = manage_page(client, customer)
    assert "Pro is active" in page and "disput" not in page.lower(), page
    body = client.get("/api/license/status", HTTP_AUTHORIZATION=f"Bearer {licence.token}").json()
    assert (body["active"], body["status"], body["subscriptionState"]) == (True, "VALID", "active")


def test_with_the_setting_off_the_customer_sees_nothing_and_support_sees_the_flag(
        customer, licence, send, stripe_settings, client, admin_client):
    assert stripe_settings.DISPUTE_LOCKS_ACCESS is False  # the default
    dispute_opened(send)
    customer.refresh_from_db()
    assert customer.dispute_open and customer_entitlement(customer).reason == Reason.VALID
    [alert] = [m for m in mail.outbox if "ops@console.test" in m.to]
    assert "Access: unchanged" in alert.body
    assert "disput" not in manage_page(client, customer).lower()
    assert "disput" not in manage_email(customer).lower()
    body = status_by_key(client, licence)
    assert (body["active"], body["status"]) == (True, "VALID") and "disput" not in str(body).lower()
    admin = admin_page(admin_client, customer)
    assert "dp_disp" in admin and "Pro is active" in admin and HEADLINE not in admin


def test_the_words_stand_without_a_dispute_row_or_an_amount(stripe_settings, settings):
    """The flag set without a readable dispute (support's bare update, an amount of 0, no support inbox)."""
    settings.DISPUTE_LOCKS_ACCESS, settings.SUPPORT_EMAIL = True, ""
    customer = SubscribedCustomerFactory(dispute_open=True)
    copy = subscription_copy(customer)
    assert (copy.state, copy.headline, copy.entitled, copy.facts, copy.pay_url) == (State.DISPUTED, HEADLINE, False,
                                                                                    (), "")
    assert copy.lines == ("A payment is disputed with your bank.", PAUSED,
                          "If you did not mean to dispute it, contact support.")
    assert copy.licence_status == "Paused (payment disputed)"
    Dispute.objects.create(stripe_id="dp_zero", customer=customer, amount=0, currency="", opened_at=timezone.now())
    assert subscription_copy(customer).lines[0] == "A payment is disputed with your bank."
    Dispute.objects.create(stripe_id="dp_noinv", customer=customer, amount=1250, currency="eur",
                           opened_at=timezone.now(), invoice_id="in_not_here")
    copy = subscription_copy(customer)
    assert copy.lines[0] == "A payment of €12.50 is disputed with your bank."
    assert copy.facts == (("Disputed payment", "€12.50"),)


def test_a_hard_lock_for_non_payment_is_said_before_a_dispute(stripe_settings, settings):
    settings.DISPUTE_LOCKS_ACCESS = True
    customer = SubscribedCustomerFactory(dispute_open=True, access_state=Customer.AccessState.HARD_LOCKED)
    assert subscription_copy(customer).state == State.LOCKED
