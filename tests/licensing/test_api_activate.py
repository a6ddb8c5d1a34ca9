import json

import pytest

from billing_console.models import AuditEvent, Customer
from licensing.models import DeviceActivation
from licensing.tokens import token_verify
from tests.licensing.factories import DeviceActivationFactory, LicenseFactory

pytestmark = pytest.mark.django_db
URL = "/api/license/activate"


def post(client, body, **extra):
    data = body if isinstance(body, (str, bytes)) else json.dumps(body)
    return client.post(URL, data=data, content_type=extra.pop("content_type", "application/json"), **extra)


def activate(client, lic, device_id="mac-01", **fields):
    return post(client, {"key": lic.key, "device_id": device_id, "name": "Ana's Mac", "platform": "macos", **fields})


def test_activation_within_the_limit_returns_a_token(api):
    lic = LicenseFactory()
    response = activate(api, lic)
    assert response.status_code == 201
    body = response.json()
    assert body["active"] is True and body["status"] == "VALID" and body["entitlement"] == "pro"
    assert body["device"]["deviceId"] == "mac-01" and body["device"]["name"] == "Ana's Mac"
    assert token_verify(body["deviceAccessToken"], device_id="mac-01")["license"] == lic.pk
    activation = DeviceActivation.objects.get()
    assert (activation.license, activation.platform, activation.deactivated_at) == (lic, "macos", None)
    assert AuditEvent.objects.filter(action="device_activation.activated", customer=lic.customer).count() == 1


def test_key_is_accepted_in_any_case_and_grouping(api):
    lic = LicenseFactory()
    sloppy = " " + lic.key.lower().replace("-", " ") + " "
    assert post(api, {"key": sloppy, "device_id": "d1"}).status_code == 201


def test_reactivating_the_same_device_is_idempotent(api):
    lic = LicenseFactory()
    first = activate(api, lic)
    second = activate(api, lic)
    assert (first.status_code, second.status_code) == (201, 200)
    assert DeviceActivation.objects.count() == 1
    assert AuditEvent.objects.filter(action="device_activation.activated").count() == 1


def test_activation_past_the_limit_is_refused_with_the_count(api):
    lic = LicenseFactory(max_devices=2)
    DeviceActivationFactory.create_batch(2, license=lic)
    response = activate(api, lic, device_id="third")
    assert response.status_code == 409
    assert response.json() == {"code": "TOO_MANY_DEVICES", "count": 2, "max": 2, "error": response.json()["error"]}
    assert not DeviceActivation.objects.filter(device_id="third").exists()


def test_already_active_device_still_answers_when_the_licence_is_full(api):
    lic = LicenseFactory(max_devices=1)
    DeviceActivationFactory(license=lic, device_id="mac-01")
    assert activate(api, lic, device_id="mac-01").status_code == 200


def test_deactivated_devices_free_their_seat_and_can_come_back(api):
    lic = LicenseFactory(max_devices=1)
    old = DeviceActivationFactory(license=lic, device_id="old")
    old.deactivated_at = old.activated_at
    old.save()
    assert activate(api, lic, device_id="new").status_code == 201
    assert activate(api, lic, device_id="old").status_code == 409
    DeviceActivation.objects.filter(device_id="new").update(deactivated_at=old.activated_at)
    assert activate(api, lic, device_id="old").status_code == 201
    old.refresh_from_db()
    assert old.deactivated_at is None and DeviceActivation.objects.count() == 2


@pytest.mark.parametrize("change,code", [
    ({"license__status": "suspended"}, "SUSPENDED"),
    ({"license__status": "revoked"}, "REVOKED"),
    ({"customer__access_state": Customer.AccessState.HARD_LOCKED}, "HARD_LOCKED"),
    ({"customer__subscription_status": "canceled"}, "CANCELED"),
])
def test_unusable_licence_cannot_activate(api, change, code):
    lic = LicenseFactory()
    for path, value in change.items():
        target, field = path.split("__")
        obj = lic if target == "license" else lic.customer
        setattr(obj, field, value)
        obj.save()
    response = activate(api, lic)
    assert response.status_code == 403 and response.json()["code"] == code
    assert not DeviceActivation.objects.exists()


def test_soft_locked_customer_can_still_activate(api):
    lic = LicenseFactory(customer__access_state=Customer.AccessState.SOFT_LOCKED)
    response = activate(api, lic)
    assert response.status_code == 201 and response.json()["status"] == "PAST_DUE_SOFT_LOCK"


def test_unknown_key_is_not_found(api):
    LicenseFactory()
    response = post(api, {"key": "BCL-AAAAA-AAAAA-AAAAA-AAAAA-AAAAA-AAAAA", "device_id": "d"})
    assert response.status_code == 404
    assert response.json() == {"code": "NOT_FOUND", "error": "Unknown licence key or device."}


@pytest.mark.parametrize("body,status,field", [
    ({"device_id": "d"}, 400, "key"),
    ({"key": "", "device_id": "d"}, 400, "key"),
    ({"key": 42, "device_id": "d"}, 400, "key"),
    ({"key": "x" * 500, "device_id": "d"}, 400, "key"),
    ({"key": "{key}"}, 400, "device_id"),
    ({"key": "{key}", "device_id": ""}, 400, "device_id"),
    ({"key": "{key}", "device_id": ["d"]}, 400, "device_id"),
    ({"key": "{key}", "device_id": "d" * 129}, 400, "device_id"),
    ({"key": "{key}", "device_id": "bad id\n"}, 400, "device_id"),
    ({"key": "{key}", "device_id": "ünïcode"}, 400, "device_id"),
    ({"key": "{key}", "device_id": "d", "name": "n" * 201}, 400, "name"),
    ({"key": "{key}", "device_id": "d", "name": {"a": 1}}, 400, "name"),
    ({"key": "{key}", "device_id": "d", "name": "tab\x00"}, 400, "name"),
    ({"key": "{key}", "device_id": "d", "platform": "p" * 65}, 400, "platform"),
])
def test_bad_input_is_refused_field_by_field_and_writes_nothing(api, body, status, field):
    lic = LicenseFactory()
    body = {k: (lic.key if v == "{key}" else v) for k, v in body.items()}
    response = post(api, body)
    assert response.status_code == status
    assert response.json()["code"] == "BAD_REQUEST" and field in response.json()["fields"]
    assert not DeviceActivation.objects.exists() and not AuditEvent.objects.exists()


@pytest.mark.parametrize("raw,content_type,status", [
    ("{not json", "application/json", 400),
    ("[1, 2]", "application/json", 400),
    ("null", "application/json", 400),
    ("", "application/json", 400),
    (b"\xff\xfe", "application/json", 400),
    ('{"key": "x"}', "text/plain", 415),
    ("key=x&device_id=d", "application/x-www-form-urlencoded", 415),
    ('{"key": "' + "x" * 9000 + '"}', "application/json", 413),
])
def test_malformed_bodies_are_refused(api, raw, content_type, status):
    response = post(api, raw, content_type=content_type)
    assert response.status_code == status and response.json()["code"] == "BAD_REQUEST"
    assert not DeviceActivation.objects.exists()


def test_get_is_not_allowed(api):
    response = api.get(URL)
    assert response.status_code == 405 and response["Allow"] == "POST"


def test_missing_signing_key_answers_503_and_writes_nothing(client, settings):
    settings.LICENSE_SIGNING_KEY = ""
    lic = LicenseFactory()
    response = activate(client, lic)
    assert response.status_code == 503
    assert response.json()["code"] == "SIGNING_UNAVAILABLE" and "LICENSE_SIGNING_KEY" in response.json()["error"]
    assert not DeviceActivation.objects.exists()


def test_api_needs_no_csrf_token(signing_key):
    from django.test import Client

    lic = LicenseFactory()
    response = activate(Client(enforce_csrf_checks=True), lic)
    assert response.status_code == 201
