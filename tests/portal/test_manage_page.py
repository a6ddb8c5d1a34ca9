from datetime import timedelta

import pytest
from django.utils import timezone

from billing_console.models import AuditEvent, Customer, Invoice
from billing_console.services import customer_rotate_manage_salt
from tests.core.factories import SubscribedCustomerFactory
from tests.deployments.factories import DeploymentFactory
from tests.licensing.factories import DeviceActivationFactory, LicenseFactory

pytestmark = pytest.mark.django_db


def test_manage_page_shows_subscription_licence_devices_and_deployment(client, manage_url):
    customer = SubscribedCustomerFactory()
    lic = LicenseFactory(customer=customer)
    DeviceActivationFactory(license=lic, name="Work laptop", device_id="dev-aaa")
    deployment = DeploymentFactory(customer=customer, script_name="acme-app",
                                   last_error_code="token_invalid", last_error_message="Invalid API Token")
    Invoice.objects.create(stripe_id="in_1", number="INV-0001", customer=customer, stripe_customer_id="cus_1",
                           currency="usd", total=900, status="paid", stripe_created=timezone.now())
    response = client.get(manage_url(customer))
    assert response.status_code == 200
    body = response.content.decode()
    assert "Pro is active" in body and "Renews on" in body
    assert lic.key_prefix in body and lic.key not in body
    assert "Work laptop" in body and "Deactivate" in body
    assert "acme-app" in body and "Rotate Cloudflare token" in body
    assert "expired or was revoked" in body  # the error code in the customer's words
    assert "INV-0001" in body and "$9.00" in body and "9.00 USD" not in body
    assert deployment.api_token not in body and deployment.api_token_encrypted not in body
    assert response["Cache-Control"].startswith("max-age=0")


def test_lock_is_explained_in_plain_words(client, manage_url):
    customer = SubscribedCustomerFactory(access_state=Customer.AccessState.HARD_LOCKED, subscription_status="past_due")
    body = client.get(manage_url(customer)).content.decode()
    assert "Locked for non-payment" in body


def test_portal_button_only_with_a_stripe_customer(client, manage_url):
    customer = SubscribedCustomerFactory()
    assert "Open billing portal" not in client.get(manage_url(customer)).content.decode()
    customer.stripe_customer_id = "cus_abc"
    customer.save()
    assert "Open billing portal" in client.get(manage_url(customer)).content.decode()


def test_portal_button_redirects_to_stripe_and_returns_to_the_manage_page(client, manage_url, emulator):
    import httpx

    from tests.stripe.conftest import API_KEY

    answer = httpx.post(f"{emulator.url}/v1/customers", data={"email": "p@example.com"},
                        headers={"Authorization": f"Bearer {API_KEY}"})
    customer = SubscribedCustomerFactory()
    customer.stripe_customer_id = answer.json()["id"]
    customer.save()
    url = manage_url(customer)
    response = client.post(url + "portal")
    assert response.status_code == 303
    assert response["Location"].startswith(emulator.url + "/portal/")
    session = emulator.list_objects("billing_portal.session")[-1]
    token = url.split("/manage/")[1].strip("/")
    # Stripe keeps the return URL in its logs: it carries no manage token, the browser's session re-enters.
    assert token not in session["return_url"] and session["return_url"] == "http://testserver/billing/return"
    back = client.get("/billing/return")
    assert back.status_code == 303 and back["Location"] == url
    assert client.get(back["Location"]).status_code == 200


def test_the_portal_return_url_opens_nothing_without_the_session_or_after_revocation(client, manage_url, emulator):
    from django.test import Client

    from billing_console.services import customer_rotate_manage_salt

    customer = SubscribedCustomerFactory()
    customer.stripe_customer_id = "cus_return"
    customer.save()
    client.post(manage_url(customer, "portal"))
    assert Client().get("/billing/return").status_code == 403  # another browser: no session, no page
    customer_rotate_manage_salt(customer=customer, actor_type="admin", actor="sam")
    assert client.get("/billing/return").status_code == 403  # revoked links stay revoked


def test_portal_when_stripe_fails_shows_a_message(client, manage_url, stripe_settings):
    stripe_settings.STRIPE_API_HOST = "http://127.0.0.1:9"
    customer = SubscribedCustomerFactory()
    customer.stripe_customer_id = "cus_x"
    customer.save()
    response = client.post(manage_url(customer, "portal"), follow=True)
    assert "billing portal could not be opened" in response.content.decode()


@pytest.mark.parametrize("token", ["garbage", "1:abc:def", "999999:xyz:abc"])
def test_a_bad_link_gets_the_expired_page_with_a_way_out(client, token):
    response = client.get(f"/manage/{token}/")
    assert response.status_code == 403
    assert 'href="/recover"' in response.content.decode()


def test_a_revoked_link_stops_working(client, manage_url):
    customer = SubscribedCustomerFactory()
    url = manage_url(customer)
    customer_rotate_manage_salt(customer=customer, actor_type="admin", actor="sam")
    assert client.get(url).status_code == 403


def test_an_expired_link_stops_working(client, manage_url, settings, monkeypatch):
    import time

    from django.core import signing

    customer = SubscribedCustomerFactory()
    # The link was signed two seconds ago (the signer's clock moved back, not the test's sleep).
    with monkeypatch.context() as past:
        past.setattr(signing.TimestampSigner, "timestamp", lambda self: signing.b62_encode(int(time.time()) - 2))
        url = manage_url(customer)
    settings.MANAGE_LINK_MAX_AGE_DAYS = 0
    assert client.get(url).status_code == 403
    settings.MANAGE_LINK_MAX_AGE_DAYS = 1
    assert client.get(url).status_code == 200


def test_posting_with_a_bad_link_changes_nothing(client):
    activation = DeviceActivationFactory()
    response = client.post(f"/manage/{activation.license.customer_id}:x:y/devices/{activation.pk}/deactivate")
    assert response.status_code == 403
    activation.refresh_from_db()
    assert activation.is_active


def test_deactivate_a_device_is_audited_with_the_customer_as_actor(client, manage_url):
    activation = DeviceActivationFactory()
    customer = activation.license.customer
    response = client.post(manage_url(customer, f"devices/{activation.pk}/deactivate"))
    assert response.status_code == 303
    activation.refresh_from_db()
    assert not activation.is_active
    event = AuditEvent.objects.get(action="device_activation.deactivated")
    assert event.actor_type == "customer" and event.actor == customer.email and event.customer == customer


def test_cannot_deactivate_another_customers_device(client, manage_url):
    mine = SubscribedCustomerFactory()
    theirs = DeviceActivationFactory()
    assert client.post(manage_url(mine, f"devices/{theirs.pk}/deactivate")).status_code == 404
    theirs.refresh_from_db()
    assert theirs.is_active


def test_forms_need_csrf(manage_url):
    from django.test import Client

    activation = DeviceActivationFactory()
    response = Client(enforce_csrf_checks=True).post(manage_url(activation.license.customer,
                                                                f"devices/{activation.pk}/deactivate"))
    assert response.status_code == 403
    activation.refresh_from_db()
    assert activation.is_active


def test_get_on_an_action_is_refused(client, manage_url):
    activation = DeviceActivationFactory()
    assert client.get(manage_url(activation.license.customer, f"devices/{activation.pk}/deactivate")).status_code == 405


def test_open_invoice_gets_a_pay_button(client, manage_url):
    customer = SubscribedCustomerFactory(subscription_status="past_due")
    Invoice.objects.create(stripe_id="in_open", customer=customer, stripe_customer_id="cus_1", currency="usd", total=900,
                           amount_due=900, status="open", hosted_invoice_url="https://invoice.stripe.com/i/x",
                           stripe_created=timezone.now() - timedelta(days=1))
    body = client.get(manage_url(customer)).content.decode()
    assert "Pay $9.00 now" in body and "https://invoice.stripe.com/i/x" in body


def test_an_open_invoice_nothing_is_owed_on_reads_nothing_due_and_asks_for_no_payment(client, manage_url):
    """A $0 invoice (a trial's, or one the account credit covers) is open for a moment before Stripe marks it paid."""
    customer = SubscribedCustomerFactory(subscription_status="trialing")
    Invoice.objects.create(stripe_id="in_zero", number="INV-0000", customer=customer, stripe_customer_id="cus_1",
                           currency="usd", total=0, amount_due=0, status="open", data={"amount_remaining": 0},
                           hosted_invoice_url="https://invoice.stripe.com/i/zero", stripe_created=timezone.now())
    body = " ".join(client.get(manage_url(customer)).content.decode().split())
    assert "INV-0000" in body and ">Nothing due<" in body and ">Open<" not in body
    assert "Pay $" not in body
