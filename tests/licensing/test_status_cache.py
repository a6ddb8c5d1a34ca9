"""The cached status answer is never stale: each write is seen on the very next status call.

Every test first proves the answer is cached (a repeat call signs nothing), then makes the change
through the path production uses, then makes one status call with the same device token.
"""
import json
from datetime import timedelta

import pytest
from django.utils import timezone

from billing_console.models import AuditEvent, Customer
from billing_console.services import customer_set_access_state
from billing_console.stripe.subscriptions import customer_apply_subscription
from dunning.services import dunning_enforce_access_policies, dunning_invoice_paid
from licensing import api
from licensing.models import DeviceActivation, License
from licensing.services import device_activation_deactivate, license_revoke
from licensing.tokens import LICENSE, b64url_decode, signing_key as current_signing_key, token_verify
from tests.dunning.factories import DunningCaseFactory
from tests.licensing.conftest import new_signing_key
from tests.licensing.factories import DeviceActivationFactory, LicenseFactory
from tests.licensing.stripe_events import subscription

pytestmark = pytest.mark.django_db
URL = "/api/license/status"
A = Customer.AccessState
SUPPORT = AuditEvent.ActorType.ADMIN


@pytest.fixture
def signs(monkeypatch):
    """How many tokens the status view signs."""
    calls = []
    real = api.token_sign

    def counting(*args, **kwargs):
        calls.append(kwargs["typ"])
        return real(*args, **kwargs)

    monkeypatch.setattr(api, "token_sign", counting)
    return calls


@pytest.fixture
def device(api, signing_key):
    activation = DeviceActivationFactory(device_id="mac-01", license=LicenseFactory())
    token = api.get(URL, {"device_id": "mac-01"}, HTTP_X_LICENSE_KEY=activation.license.key).json()["deviceAccessToken"]
    return activation, token


def status(client, token):
    response = client.get(URL, HTTP_AUTHORIZATION=f"Bearer {token}")
    assert response.status_code == 200, response.content
    return response.json()


def warm(client, token, signs):
    """Two calls: the first computes and caches, the second is served from the cache (signs nothing)."""
    first = status(client, token)
    signs.clear()
    second = status(client, token)
    assert signs == [], "the second call was not served from the cache"
    assert (second["license"], second["deviceAccessToken"]) == (first["license"], first["deviceAccessToken"])
    return second


def kid_of(token):
    return json.loads(b64url_decode(token.split(".")[0]))["kid"]


def test_a_repeat_call_reuses_the_signed_tokens_and_refreshes_the_check_time(api, device, signs):
    activation, token = device
    body = warm(api, token, signs)
    assert body["active"] is True and body["status"] == "VALID"
    assert body["device"]["deviceId"] == "mac-01" and body["checkedAt"]


def test_revoked_licence_is_seen_on_the_next_call(api, device, signs):
    activation, token = device
    assert warm(api, token, signs)["active"] is True
    license_revoke(license=activation.license, actor_type=SUPPORT, actor="support", reason="chargeback")
    body = status(api, token)
    assert (body["active"], body["status"], body["deviceAccessToken"]) == (False, "REVOKED", None)
    assert token_verify(body["license"], typ=LICENSE)["status"] == "REVOKED"


def test_suspension_written_by_a_bare_update_is_seen_on_the_next_call(api, device, signs):
    """No service, no signal: the cache is keyed by the row itself."""
    activation, token = device
    warm(api, token, signs)
    License.objects.filter(pk=activation.license_id).update(status=License.Status.SUSPENDED)
    assert status(api, token)["status"] == "SUSPENDED"


def test_deactivated_device_is_seen_on_the_next_call(api, device, signs):
    activation, token = device
    warm(api, token, signs)
    device_activation_deactivate(activation=activation, actor_type=SUPPORT, actor="support")
    body = status(api, token)
    assert (body["active"], body["status"]) == (False, "NO_DEVICE")
    assert (body["device"], body["deviceAccessToken"]) == (None, None)


def test_dunning_hard_lock_is_seen_on_the_next_call_and_the_payment_that_unlocks_too(api, device, signs):
    activation, token = device
    customer = activation.license.customer
    case = DunningCaseFactory(customer=customer, opened_at=timezone.now() - timedelta(days=1))
    assert warm(api, token, signs)["status"] == "VALID"

    dunning_enforce_access_policies(now=timezone.now() + timedelta(days=30))  # past the policy's hard-lock days
    customer.refresh_from_db()
    assert customer.access_state == A.HARD_LOCKED
    body = status(api, token)
    assert (body["active"], body["status"], body["lock"]) == (False, "HARD_LOCKED", "hard")
    assert body["deviceAccessToken"] is None

    warm(api, token, signs)  # the locked answer is cached in its turn
    dunning_invoice_paid(invoice_id=case.invoice_id, paid_at=timezone.now())
    customer.refresh_from_db()
    assert customer.access_state == A.ACTIVE
    body = status(api, token)
    assert (body["active"], body["status"], body["lock"]) == (True, "VALID", None)
    assert token_verify(body["deviceAccessToken"], device_id="mac-01")["status"] == "VALID"


def test_cancel_is_seen_on_the_next_call(api, device, signs):
    activation, token = device
    customer = activation.license.customer
    warm(api, token, signs)
    customer_apply_subscription(customer=customer, subscription=subscription(sub_id=customer.subscription_id,
                                                                             status="canceled"),
                                state_at=None, force=True)
    body = status(api, token)
    assert (body["active"], body["status"], body["entitlement"]) == (False, "CANCELED", None)


def test_soft_lock_is_seen_on_the_next_call(api, device, signs):
    activation, token = device
    warm(api, token, signs)
    customer_set_access_state(customer=activation.license.customer, state=A.SOFT_LOCKED, actor_type=SUPPORT)
    body = status(api, token)
    assert (body["active"], body["status"], body["lock"]) == (True, "PAST_DUE_SOFT_LOCK", "soft")


def test_rotated_signing_key_is_seen_on_the_next_call(api, device, signs, settings):
    activation, token = device
    old_kid = current_signing_key()[1].kid
    old_public = current_signing_key()[1].as_jwk()["publicKeyBase64"]
    body = warm(api, token, signs)
    assert kid_of(body["license"]) == kid_of(body["deviceAccessToken"]) == old_kid

    settings.LICENSE_SIGNING_KEY, _ = new_signing_key()
    settings.LICENSE_VERIFY_KEYS_PREVIOUS = [f"{old_kid}:{old_public}"]  # tokens out there still verify
    new_kid = current_signing_key()[1].kid
    body = status(api, token)
    assert new_kid != old_kid
    assert kid_of(body["license"]) == kid_of(body["deviceAccessToken"]) == new_kid
    assert token_verify(body["license"], typ=LICENSE)["active"] is True


def test_tokens_are_signed_again_past_half_their_life(api, device, signs, monkeypatch):
    activation, token = device
    Customer.objects.filter(pk=activation.license.customer_id).update(current_period_end=None)  # 24-hour tokens
    first = status(api, token)
    start = timezone.now()

    monkeypatch.setattr(timezone, "now", lambda: start + timedelta(hours=11))
    signs.clear()
    assert status(api, token)["deviceAccessToken"] == first["deviceAccessToken"] and signs == []

    monkeypatch.setattr(timezone, "now", lambda: start + timedelta(hours=12, minutes=1))
    later = status(api, token)
    assert signs == ["BC-LICENSE", "BC-DEVICE"]
    assert token_verify(later["deviceAccessToken"])["exp"] > token_verify(first["deviceAccessToken"])["exp"]


def test_a_check_in_write_alone_does_not_sign_again(api, device, signs):
    activation, token = device
    warm(api, token, signs)
    DeviceActivation.objects.filter(pk=activation.pk).update(last_checked_at=timezone.now() - timedelta(hours=1))
    signs.clear()
    body = status(api, token)
    assert signs == []
    checked = DeviceActivation.objects.get(pk=activation.pk).last_checked_at
    assert timezone.now() - checked < timedelta(seconds=5)
    assert body["device"]["lastCheckedAt"] == checked.strftime("%Y-%m-%dT%H:%M:%SZ")


@pytest.mark.django_db(transaction=True)
def test_a_dead_database_connection_is_replaced_by_the_status_query_itself(api, device):
    """On PostgreSQL the prepared status query stands in for Django's SELECT 1 health check."""
    from django.db import connection

    if connection.vendor != "postgresql":
        pytest.skip("the prepared statement path is PostgreSQL's")
    activation, token = device
    assert connection.health_check_enabled
    connection.connection.close()  # the server went away under a kept-alive connection
    connection.health_check_done = False  # as at the start of every request
    body = status(api, token)
    assert body["active"] is True
    assert not connection.connection.closed


def test_the_lean_api_path_still_refuses_a_host_not_allowed(api, device):
    activation, token = device
    response = api.get(URL, HTTP_AUTHORIZATION=f"Bearer {token}", HTTP_HOST="evil.example")
    assert response.status_code == 400
    assert "X-Frame-Options" not in api.get(URL, HTTP_AUTHORIZATION=f"Bearer {token}")  # past the page middleware


def test_the_answer_is_not_served_past_the_paid_period_end(api, device, signs, monkeypatch):
    """Grace starts by the clock alone when the paid period ends: the cached words must not outlive it."""
    activation, token = device
    period_end = timezone.now() + timedelta(hours=2)
    Customer.objects.filter(pk=activation.license.customer_id).update(current_period_end=period_end)
    warm(api, token, signs)
    monkeypatch.setattr(timezone, "now", lambda: period_end + timedelta(minutes=1))
    signs.clear()
    status(api, token)
    assert signs == ["BC-LICENSE", "BC-DEVICE"]  # computed again, not the answer cached before the period ended
