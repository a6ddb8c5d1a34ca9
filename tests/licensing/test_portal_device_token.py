"""POST /api/billing/portal with a device access token (the desktop app): licensing verifies it through the
core's portal authenticator registry; anything that is not a valid token of an active device is 401."""
import pytest

from billing_console.models import AuditEvent
from billing_console.stripe.gateway import client as stripe_api
from licensing.services import device_activation_deactivate, license_reissue_key
from licensing.tokens import DEVICE, token_sign
from tests.stripe.conftest import emulator, stripe_settings  # noqa: F401
from tests.licensing.factories import DeviceActivationFactory

pytestmark = pytest.mark.django_db
URL = "/api/billing/portal"


@pytest.fixture
def activation(signing_key, emulator):  # noqa: F811
    stripe_customer = stripe_api().v1.customers.create(params={"email": "desk@example.com"})
    activation = DeviceActivationFactory(device_id="mac-01")
    customer = activation.license.customer
    customer.stripe_customer_id = stripe_customer["id"]
    customer.save(update_fields=["stripe_customer"])
    return activation


def device_token(client, activation):
    return client.get("/api/license/status", {"device_id": activation.device_id},
                      HTTP_X_LICENSE_KEY=activation.license.key).json()["deviceAccessToken"]


def post(client, token, body=b""):
    return client.post(URL, body, content_type="application/json", HTTP_AUTHORIZATION=f"Bearer {token}")


def test_a_device_token_opens_the_portal_and_is_audited(client, activation, emulator):  # noqa: F811
    response = post(client, device_token(client, activation))
    assert response.status_code == 200 and response.json()["url"].startswith(emulator.url + "/portal/bps_")
    event = AuditEvent.objects.get(action="customer.portal_opened")
    assert event.customer == activation.license.customer and event.data == {"via": "device_token"}


def test_an_empty_json_object_with_the_token_works_too(client, activation):
    assert post(client, device_token(client, activation), b"{}").status_code == 200


@pytest.mark.parametrize("header", ["Bearer ", "Basic abc", "Bearer not.a.token", "Bearer a.b", "Bearer " + "x" * 5000])
def test_a_bad_authorization_header_is_401(client, activation, header):
    response = client.post(URL, b"", content_type="application/json", HTTP_AUTHORIZATION=header)
    assert response.status_code == 401 and response.json()["error"]["code"] == "UNAUTHORIZED"
    assert not AuditEvent.objects.filter(action="customer.portal_opened").exists()


def test_a_token_of_a_deactivated_device_or_an_old_key_is_401(client, activation):
    token = device_token(client, activation)
    device_activation_deactivate(activation=activation, actor_type="admin", actor="sam")
    assert post(client, token).status_code == 401


def test_a_token_minted_before_a_key_reissue_is_401(client, activation):
    token = device_token(client, activation)
    license_reissue_key(license=activation.license, actor_type="admin", actor="sam")
    assert post(client, token).status_code == 401


def test_a_licence_token_is_not_a_device_token(client, activation):
    from datetime import timedelta

    from django.utils import timezone

    forged = token_sign({"license": activation.license.pk, "device": "mac-01", "gen": activation.license.key_generation},
                        typ="license", expires_at=timezone.now() + timedelta(hours=1))
    assert post(client, forged).status_code == 401
    good = token_sign({"license": activation.license.pk, "device": "mac-01", "gen": activation.license.key_generation},
                      typ=DEVICE, expires_at=timezone.now() + timedelta(hours=1))
    assert post(client, good).status_code == 200


def test_without_any_credential_it_is_401(client, activation):
    assert client.post(URL, b"", content_type="application/json").status_code == 401
