import json

import pytest

from billing_console.models import AuditEvent
from licensing.models import DeviceActivation
from tests.licensing.factories import DeviceActivationFactory, LicenseFactory

pytestmark = pytest.mark.django_db
URL = "/api/license/deactivate"


def post(client, body, **headers):
    return client.post(URL, data=json.dumps(body), content_type="application/json", **headers)


@pytest.fixture
def activation(signing_key):
    return DeviceActivationFactory(device_id="mac-01", license=LicenseFactory())


def test_deactivate_with_the_key_frees_the_seat(api, activation):
    response = post(api, {"key": activation.license.key, "device_id": "mac-01"})
    assert response.status_code == 200 and response.json()["deviceId"] == "mac-01"
    activation.refresh_from_db()
    assert activation.deactivated_at is not None
    assert AuditEvent.objects.filter(action="device_activation.deactivated", customer=activation.license.customer).count() == 1


def test_deactivate_with_the_device_token(api, activation):
    token = api.get("/api/license/status", {"device_id": "mac-01"},
                    HTTP_X_LICENSE_KEY=activation.license.key).json()["deviceAccessToken"]
    response = post(api, {"device_id": "mac-01"}, HTTP_AUTHORIZATION=f"Bearer {token}")
    assert response.status_code == 200
    assert DeviceActivation.objects.get().deactivated_at is not None
    # The token no longer gets a working status.
    status = api.get("/api/license/status", HTTP_AUTHORIZATION=f"Bearer {token}").json()
    assert (status["active"], status["status"]) == (False, "NO_DEVICE")


def test_deactivate_twice_is_idempotent(api, activation):
    first = post(api, {"key": activation.license.key, "device_id": "mac-01"})
    second = post(api, {"key": activation.license.key, "device_id": "mac-01"})
    assert first.status_code == second.status_code == 200
    assert first.json()["deactivatedAt"] == second.json()["deactivatedAt"]
    assert AuditEvent.objects.filter(action="device_activation.deactivated").count() == 1


def test_token_of_one_device_cannot_deactivate_another(api, activation):
    DeviceActivationFactory(device_id="other", license=activation.license)
    token = api.get("/api/license/status", {"device_id": "mac-01"},
                    HTTP_X_LICENSE_KEY=activation.license.key).json()["deviceAccessToken"]
    response = post(api, {"device_id": "other"}, HTTP_AUTHORIZATION=f"Bearer {token}")
    assert response.status_code == 401
    assert DeviceActivation.objects.filter(deactivated_at__isnull=True).count() == 2


def test_unknown_key_and_unknown_device_get_the_same_answer(api, activation):
    unknown_key = post(api, {"key": "BCL-AAAAA-AAAAA-AAAAA-AAAAA-AAAAA-AAAAA", "device_id": "mac-01"})
    unknown_device = post(api, {"key": activation.license.key, "device_id": "never-seen"})
    assert unknown_key.status_code == unknown_device.status_code == 404
    assert unknown_key.content == unknown_device.content
    assert DeviceActivation.objects.get().deactivated_at is None


@pytest.mark.parametrize("body", [
    {"device_id": "mac-01"},
    {"key": "{key}"},
    {"key": "{key}", "device_id": 7},
    {"key": ["x"], "device_id": "mac-01"},
    {"key": "{key}", "device_id": "a b"},
])
def test_bad_deactivate_input_is_a_400_and_changes_nothing(api, activation, body):
    body = {k: (activation.license.key if v == "{key}" else v) for k, v in body.items()}
    response = post(api, body)
    assert response.status_code == 400 and response.json()["code"] == "BAD_REQUEST"
    assert DeviceActivation.objects.get().deactivated_at is None and not AuditEvent.objects.exists()


def test_bad_bearer_token_is_a_401_and_changes_nothing(api, activation):
    response = post(api, {"device_id": "mac-01"}, HTTP_AUTHORIZATION="Bearer not.a.token")
    assert response.status_code == 401 and response["WWW-Authenticate"].startswith("Bearer")
    assert DeviceActivation.objects.get().deactivated_at is None
