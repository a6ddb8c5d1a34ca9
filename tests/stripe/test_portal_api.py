"""POST /api/billing/portal: a manage-link token opens the Stripe Customer Portal; anything else is refused."""
import pytest

from billing_console.manage_links import manage_link_token
from billing_console.services import customer_rotate_manage_salt
from tests.core.factories import CustomerFactory
from billing_console.stripe.gateway import client as stripe_api

pytestmark = pytest.mark.django_db
URL = "/api/billing/portal"


def post(client, payload):
    return client.post(URL, payload, content_type="application/json")


def test_valid_manage_link_token_opens_the_portal(client, emulator):
    stripe_customer = stripe_api().v1.customers.create(params={"email": "p@example.com"})
    customer = CustomerFactory(email="p@example.com", stripe_customer_id=stripe_customer["id"])
    response = post(client, {"token": manage_link_token(customer)})
    assert response.status_code == 200
    assert response.json()["url"].startswith(emulator.url + "/portal/bps_")


@pytest.mark.parametrize("token", ["", "nonsense", "1:abc:def", "999999:x:y", "²:x:y", "١٢:x:y", 12, None])
def test_bad_token_is_401(client, stripe_settings, token):
    response = post(client, {"token": token})
    assert response.status_code == 401
    assert response.json()["error"]["code"] == "UNAUTHORIZED"


def test_revoked_link_is_401(client, stripe_settings):
    customer = CustomerFactory(stripe_customer_id="cus_revoked")
    token = manage_link_token(customer)
    customer_rotate_manage_salt(customer=customer, actor_type="admin", actor="support")
    assert post(client, {"token": token}).status_code == 401


def test_expired_link_is_401(client, stripe_settings, settings):
    customer = CustomerFactory(stripe_customer_id="cus_old")
    token = manage_link_token(customer)
    settings.MANAGE_LINK_MAX_AGE_DAYS = -1
    assert post(client, {"token": token}).status_code == 401


def test_customer_without_stripe_account_is_409(client, stripe_settings):
    customer = CustomerFactory()
    response = post(client, {"token": manage_link_token(customer)})
    assert response.status_code == 409


def test_body_that_is_not_json_is_400(client):
    assert client.post(URL, data=b"{nope", content_type="application/json").status_code == 400
