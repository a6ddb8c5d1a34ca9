from datetime import timedelta

import pytest
from django.utils import timezone

from billing_console.models import Customer
from licensing.models import DeviceActivation, License
from licensing.services import license_reissue_key
from licensing.tokens import DEVICE, LICENSE, token_sign, token_verify
from tests.licensing.factories import DeviceActivationFactory, LicenseFactory

pytestmark = pytest.mark.django_db
URL = "/api/license/status"
A = Customer.AccessState


def by_key(client, lic, device_id):
    return client.get(URL, {"device_id": device_id}, HTTP_X_LICENSE_KEY=lic.key)


def by_token(client, token, **params):
    return client.get(URL, params, HTTP_AUTHORIZATION=f"Bearer {token}")


def device_token(client, lic, device_id="mac-01"):
    return by_key(client, lic, device_id).json()["deviceAccessToken"]


@pytest.fixture
def activation(signing_key):
    return DeviceActivationFactory(device_id="mac-01", license=LicenseFactory())


def test_valid_licence_by_key_and_device(api, activation):
    lic = activation.license
    response = by_key(api, lic, "mac-01")
    assert response.status_code == 200
    body = response.json()
    period_end = lic.customer.current_period_end
    assert body["active"] is True and body["status"] == "VALID" and body["entitlement"] == "pro"
    assert body["offlineGraceDays"] == 7 and body["maxDevices"] == 3 and body["licenseKeyPrefix"] == lic.key_prefix
    assert body["currentPeriodEnd"] == period_end.strftime("%Y-%m-%dT%H:%M:%SZ")
    assert body["graceEndsAt"] == (period_end + timedelta(days=7)).strftime("%Y-%m-%dT%H:%M:%SZ")
    assert body["device"]["deviceId"] == "mac-01"
    claims = token_verify(body["deviceAccessToken"], device_id="mac-01")
    assert claims["expiresAt"] == body["deviceAccessTokenExpiresAtIso"] == body["graceEndsAt"]
    assert (claims["customer"], claims["license"], claims["entitlement"]) == (lic.customer_id, lic.pk, "pro")
    blob = token_verify(body["license"], typ=LICENSE, device_id="mac-01")
    assert blob["active"] is True and blob["maxDevices"] == 3 and blob["graceEndsAt"] == body["graceEndsAt"]
    assert response["Cache-Control"] == "no-store"


def test_valid_licence_by_device_token(api, activation):
    token = device_token(api, activation.license)
    response = by_token(api, token)
    assert response.status_code == 200 and response.json()["status"] == "VALID"
    assert by_token(api, token, device_id="mac-01").status_code == 200


def test_status_records_the_check_in(api, activation):
    DeviceActivation.objects.filter(pk=activation.pk).update(last_checked_at=timezone.now() - timedelta(days=2))
    by_key(api, activation.license, "mac-01")
    activation.refresh_from_db()
    assert timezone.now() - activation.last_checked_at < timedelta(seconds=5)


def _set(lic, **changes):
    for name, value in changes.items():
        target, field = name.split("__") if "__" in name else ("license", name)
        obj = lic.customer if target == "customer" else lic
        setattr(obj, field, value)
        obj.save()


@pytest.mark.parametrize("changes,active,status", [
    ({}, True, "VALID"),
    ({"customer__subscription_status": "trialing"}, True, "VALID"),
    ({"customer__subscription_status": "past_due", "customer__access_state": A.GRACE}, True, "PAST_DUE"),
    ({"customer__subscription_status": "past_due", "customer__access_state": A.SOFT_LOCKED}, True, "PAST_DUE_SOFT_LOCK"),
    ({"customer__subscription_status": "unpaid", "customer__access_state": A.HARD_LOCKED}, False, "HARD_LOCKED"),
    ({"customer__subscription_status": "canceled", "customer__access_state": A.CANCELED}, False, "CANCELED"),
    ({"customer__subscription_status": "canceled"}, False, "CANCELED"),
    ({"customer__subscription_id": "sub_newer"}, False, "CANCELED"),
    ({"customer__subscription_status": "incomplete"}, False, "INCOMPLETE"),
    ({"customer__subscription_status": ""}, False, "NO_SUBSCRIPTION"),
    ({"customer__current_period_end": timezone.now() - timedelta(days=8)}, False, "EXPIRED"),
    ({"status": License.Status.SUSPENDED}, False, "SUSPENDED"),
    ({"status": License.Status.REVOKED}, False, "REVOKED"),
])
def test_status_for_every_licence_reason(api, activation, changes, active, status):
    token = device_token(api, activation.license)
    _set(activation.license, **changes)
    for response in (by_key(api, activation.license, "mac-01"), by_token(api, token)):
        body = response.json()
        assert response.status_code == 200
        assert (body["active"], body["status"]) == (active, status)
        assert (body["deviceAccessToken"] is not None) is active
        assert (body["entitlement"] == "pro") is active
        assert token_verify(body["license"], typ=LICENSE)["status"] == status


def test_soft_lock_says_so_and_stays_active(api, activation):
    _set(activation.license, customer__subscription_status="past_due", customer__access_state=A.SOFT_LOCKED)
    body = by_key(api, activation.license, "mac-01").json()
    assert body["active"] is True and body["status"] == "PAST_DUE_SOFT_LOCK" and body["lock"] == "soft"


def test_device_not_activated_is_no_device(api, activation):
    body = by_key(api, activation.license, "other-device").json()
    assert (body["active"], body["status"], body["device"], body["deviceAccessToken"]) == (False, "NO_DEVICE", None, None)


def test_device_not_activated_on_a_full_licence_is_too_many_devices(api, activation):
    lic = activation.license
    DeviceActivationFactory.create_batch(2, license=lic)
    body = by_key(api, lic, "fourth").json()
    assert (body["active"], body["status"]) == (False, "TOO_MANY_DEVICES")


def test_deactivated_device_with_a_valid_token_is_no_device(api, activation):
    token = device_token(api, activation.license)
    DeviceActivation.objects.filter(pk=activation.pk).update(deactivated_at=timezone.now())
    body = by_token(api, token).json()
    assert (body["active"], body["status"], body["deviceAccessToken"]) == (False, "NO_DEVICE", None)


def test_token_expires_at_period_end_plus_offline_grace(api, activation):
    lic = activation.license
    body = by_key(api, lic, "mac-01").json()
    expected = lic.customer.current_period_end + timedelta(days=7)
    assert token_verify(body["deviceAccessToken"])["exp"] == int(expected.timestamp())
    assert by_token(api, body["deviceAccessToken"]).status_code == 200


def test_token_without_a_known_period_end_lasts_24_hours(api, activation):
    _set(activation.license, customer__current_period_end=None)
    before = timezone.now()
    body = by_key(api, activation.license, "mac-01").json()
    exp = token_verify(body["deviceAccessToken"])["exp"]
    assert int((before + timedelta(hours=24)).timestamp()) <= exp <= int((timezone.now() + timedelta(hours=24)).timestamp())
    assert body["graceEndsAt"] is None and body["currentPeriodEnd"] is None


def test_token_is_short_lived_while_payment_is_past_due(api, activation):
    _set(activation.license, customer__subscription_status="past_due", customer__access_state=A.SOFT_LOCKED)
    body = by_key(api, activation.license, "mac-01").json()
    assert token_verify(body["deviceAccessToken"])["exp"] <= int((timezone.now() + timedelta(hours=24)).timestamp())


def test_expired_token_is_refused(api, activation):
    lic = activation.license
    expired = token_sign({"customer": lic.customer_id, "license": lic.pk, "device": "mac-01", "gen": 1},
                         typ=DEVICE, expires_at=timezone.now() - timedelta(seconds=1))
    assert by_token(api, expired).status_code == 401


def test_unknown_key_wrong_device_and_bad_tokens_get_one_shape(api, activation):
    lic = activation.license
    token = device_token(api, lic)
    unknown_key = api.get(URL, {"device_id": "mac-01"}, HTTP_X_LICENSE_KEY="BCL-AAAAA-AAAAA-AAAAA-AAAAA-AAAAA-AAAAA")
    assert unknown_key.status_code == 404
    assert unknown_key.json() == {"code": "NOT_FOUND", "error": "Unknown licence key or device."}
    answers = [by_token(api, token, device_id="someone-else"), by_token(api, token[:-4] + "AAAA"),
               by_token(api, "garbage"), api.get(URL, HTTP_AUTHORIZATION="Basic abc"),
               by_token(api, token.split(".")[0] + ".e30." + token.split(".")[2])]
    assert {r.status_code for r in answers} == {401}
    assert len({r.content for r in answers}) == 1


def test_tokens_minted_before_a_reissue_are_refused(api, activation):
    lic = activation.license
    token = device_token(api, lic)
    _, new_key = license_reissue_key(license=lic, actor_type="admin", actor="support")
    assert by_token(api, token).status_code == 401
    assert by_key(api, lic, "mac-01").status_code == 404  # the old key
    assert api.get(URL, {"device_id": "mac-01"}, HTTP_X_LICENSE_KEY=new_key).json()["status"] == "VALID"


def test_key_in_the_url_is_refused(api, activation):
    response = api.get(URL, {"device_id": "mac-01", "key": activation.license.key})
    assert response.status_code == 400 and "X-License-Key" in response.json()["error"]


@pytest.mark.parametrize("params,headers,field", [
    ({"device_id": "mac-01"}, {}, "key"),
    ({}, {"HTTP_X_LICENSE_KEY": "{key}"}, "device_id"),
    ({"device_id": "x" * 200}, {"HTTP_X_LICENSE_KEY": "{key}"}, "device_id"),
    ({"device_id": "mac-01"}, {"HTTP_X_LICENSE_KEY": "k" * 100}, "key"),
])
def test_bad_status_input_is_a_clear_400(api, activation, params, headers, field):
    headers = {k: (activation.license.key if v == "{key}" else v) for k, v in headers.items()}
    response = api.get(URL, params, **headers)
    assert response.status_code == 400 and field in response.json()["fields"]


def test_missing_signing_key_answers_503(client, settings, activation):
    settings.LICENSE_SIGNING_KEY = ""
    response = by_key(client, activation.license, "mac-01")
    assert response.status_code == 503 and "LICENSE_SIGNING_KEY" in response.json()["error"]


def test_status_by_token_runs_one_query_when_checked_in_recently(api, activation, django_assert_num_queries):
    token = device_token(api, activation.license)
    with django_assert_num_queries(1):
        assert by_token(api, token).status_code == 200


def test_status_by_token_runs_two_queries_when_the_check_in_is_written(api, activation, django_assert_num_queries):
    token = device_token(api, activation.license)
    DeviceActivation.objects.filter(pk=activation.pk).update(last_checked_at=timezone.now() - timedelta(hours=1))
    with django_assert_num_queries(2):
        assert by_token(api, token).status_code == 200


def test_status_by_key_runs_a_fixed_number_of_queries_whatever_the_devices(api, activation, django_assert_num_queries):
    DeviceActivationFactory.create_batch(2, license=activation.license)
    with django_assert_num_queries(2):
        assert by_key(api, activation.license, "mac-01").status_code == 200


@pytest.mark.parametrize("field, value", [("kid", ["a"]), ("typ", {"x": 1})])
def test_a_token_whose_header_field_is_a_list_or_dict_answers_401_and_is_counted(client, signing_key, settings,
                                                                                  field, value):
    import json as _json

    from licensing.tokens import b64url

    settings.LICENSE_RATE_LIMIT_PER_ADDRESS = 2
    settings.LICENSE_RATE_LIMIT_WINDOW_SECONDS = 3600
    from licensing.tokens import b64url_decode, verify_keys

    kid = next(iter(verify_keys()))
    header = b64url(_json.dumps({"alg": "EdDSA", "kid": kid, "typ": DEVICE, field: value}).encode())
    token = f"{header}.{b64url(b'{}')}.{b64url(b'sig')}"
    assert b64url_decode(header)
    codes = [client.get("/api/license/status", HTTP_AUTHORIZATION=f"Bearer {token}").status_code for _ in range(3)]
    assert codes == [401, 401, 429]


def test_a_request_that_fails_unexpectedly_is_still_counted(client, signing_key, settings, monkeypatch):
    import licensing.api

    settings.LICENSE_RATE_LIMIT_PER_ADDRESS = 1
    settings.LICENSE_RATE_LIMIT_WINDOW_SECONDS = 3600

    def boom(*args, **kwargs):
        raise RuntimeError("unexpected")

    monkeypatch.setattr(licensing.api, "token_verify_device", boom)
    client.raise_request_exception = False
    assert client.get("/api/license/status", HTTP_AUTHORIZATION="Bearer a.b.c").status_code == 500
    monkeypatch.undo()
    assert client.get("/api/license/public-key").status_code == 429
