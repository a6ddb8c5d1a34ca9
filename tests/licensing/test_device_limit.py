"""A licence's count of active devices (License.active_devices, in the row the status call reads) and what
a downgrade past it tells the customer: the licence API, the manage page and the admin say the same words.
The count is written by every path that activates or deactivates a device, so a status answer cached for
one device is never stale after another device frees a seat."""
import ast
import importlib
from pathlib import Path

import pytest
from django.apps import apps as django_apps
from django.urls import reverse

from billing_console.manage_links import manage_link_token
from billing_console.models import AuditEvent, Customer
from billing_console.stripe.dispatch import dispatch
from licensing import api as license_api
from licensing.models import DeviceActivation, License
from licensing.services import device_activation_revoke, license_ensure, license_reset_activations
from tests.core.factories import SubscribedCustomerFactory
from tests.licensing import stripe_events
from tests.licensing.factories import DeviceActivationFactory, LicenseFactory

pytestmark = pytest.mark.django_db
ROOT = Path(__file__).resolve().parents[2]
STATUS = "/api/license/status"
SUPPORT = AuditEvent.ActorType.ADMIN
OVER = ("Your plan now allows 1 device. 3 devices are active and keep working; "
        "deactivate 3 to activate a new one.")


def activate(client, lic, device_id):
    return client.post("/api/license/activate", {"key": lic.key, "device_id": device_id},
                       content_type="application/json")


def deactivate(client, lic, device_id):
    return client.post("/api/license/deactivate", {"key": lic.key, "device_id": device_id},
                       content_type="application/json")


def by_token(client, token):
    response = client.get(STATUS, HTTP_AUTHORIZATION=f"Bearer {token}")
    assert response.status_code == 200, response.content
    return response.json()


def count(lic) -> int:
    lic.refresh_from_db(fields=["active_devices"])
    assert lic.active_devices == DeviceActivation.objects.filter(license=lic, deactivated_at__isnull=True).count()
    return lic.active_devices


@pytest.fixture
def plans(settings):
    """Pro allows one device here (so a team -> pro downgrade leaves devices over the limit)."""
    settings.PLANS = {code: {**plan, "price_id": f"price_sandbox_{code}"} for code, plan in settings.PLANS.items()}
    settings.PLANS["pro"]["max_devices"] = 1
    return settings.PLANS


@pytest.fixture
def team(plans):
    """A Team licence (10 devices) with three devices activated through the API."""
    customer = SubscribedCustomerFactory(plan="team", price_id="price_sandbox_team")
    return LicenseFactory(customer=customer, plan="team", max_devices=10, offline_grace_days=14)


def change_plan(customer, price, quantity=1):
    """The Stripe event of a plan or quantity change, through the receivers (core, then licensing)."""
    sub = stripe_events.subscription(sub_id=customer.subscription_id, price=price)
    sub["items"]["data"][0]["quantity"] = quantity
    dispatch(stripe_events.event("customer.subscription.updated", sub))


def test_the_count_follows_every_activation_and_deactivation(api, admin_client, client):
    lic = LicenseFactory(max_devices=3)
    assert activate(api, lic, "a").status_code == 201 and activate(api, lic, "b").status_code == 201
    assert count(lic) == 2
    assert activate(api, lic, "a").status_code == 200 and count(lic) == 2  # already active: no new seat
    assert deactivate(api, lic, "a").status_code == 200 and count(lic) == 1
    assert deactivate(api, lic, "a").status_code == 200 and count(lic) == 1  # repeated: harmless
    assert deactivate(api, lic, "never-seen").status_code == 404 and count(lic) == 1
    assert activate(api, lic, "a").status_code == 201 and count(lic) == 2  # re-activated

    b = DeviceActivation.objects.get(license=lic, device_id="b")
    admin_client.post(reverse("admin:licensing_deviceactivation_changelist"),
                      {"action": "revoke_device", "_selected_action": [b.pk]}, follow=True)
    assert count(lic) == 1
    device_activation_revoke(activation=b, actor_type=SUPPORT, actor="support")  # already revoked: no change
    assert count(lic) == 1

    a = DeviceActivation.objects.get(license=lic, device_id="a")
    response = client.post(f"/manage/{manage_link_token(lic.customer)}/devices/{a.pk}/deactivate")
    assert response.status_code == 303 and count(lic) == 0  # the customer's own button on the manage page

    activate(api, lic, "c"), activate(api, lic, "d")
    assert count(lic) == 2
    assert license_reset_activations(license=lic, actor_type=SUPPORT, actor="support") == 2
    assert count(lic) == 0
    assert AuditEvent.objects.filter(action="device_activation.deactivated", data__active_devices=1).exists()


def test_a_downgrade_keeps_the_active_devices_and_every_screen_says_so(api, admin_client, client, team):
    for device in ("a", "b", "c"):
        assert activate(api, team, device).status_code == 201
    token = activate(api, team, "a").json()["deviceAccessToken"]

    change_plan(team.customer, "price_sandbox_pro")
    team.refresh_from_db()
    assert (team.plan, team.max_devices, team.active_devices, team.devices_over_limit) == ("pro", 1, 3, 2)
    audit = AuditEvent.objects.get(action="license.plan_changed")
    assert (audit.data["active_devices"], audit.data["over_limit_kept"]) == (3, 2)

    body = by_token(api, token)  # a device already active keeps working, and is told
    assert (body["active"], body["status"]) == (True, "VALID")
    assert (body["maxDevices"], body["activeDevices"], body["devicesOverLimit"]) == (1, 3, 2)
    assert body["deviceLimitMessage"] == OVER

    refused = activate(api, team, "new")
    assert refused.status_code == 409
    assert refused.json()["code"] == "TOO_MANY_DEVICES" and refused.json()["error"] == OVER
    assert (refused.json()["count"], refused.json()["max"]) == (3, 1)

    manage = client.get(f"/manage/{manage_link_token(team.customer)}/").content.decode()
    assert OVER in manage and "3 of 1 device" in manage and "(s)" not in manage
    customer_page = admin_client.get(reverse("admin:billing_console_customer_change",
                                             args=[team.customer_id])).content.decode()
    assert f"3 of 1 device. Customer told: {OVER}" in customer_page
    licence_page = admin_client.get(reverse("admin:licensing_license_change", args=[team.pk])).content.decode()
    assert f"Customer told: {OVER}" in licence_page

    # The number the words give is exact: one fewer deactivation still leaves no seat.
    deactivate(api, team, "b"), deactivate(api, team, "c")
    assert activate(api, team, "new").json()["error"] == "This licence is active on 1 of 1 device; deactivate one first."
    assert by_token(api, token)["deviceLimitMessage"] is None  # within the limit: nothing more to say
    deactivate(api, team, "a")
    assert activate(api, team, "new").status_code == 201 and count(team) == 1


def test_an_upgrade_or_a_higher_quantity_clears_the_words(api, team):
    for device in ("a", "b", "c"):
        activate(api, team, device)
    token = activate(api, team, "a").json()["deviceAccessToken"]
    change_plan(team.customer, "price_sandbox_pro")
    assert by_token(api, token)["devicesOverLimit"] == 2

    change_plan(team.customer, "price_sandbox_pro", quantity=2)  # 1 device x 2 seats
    body = by_token(api, token)
    assert (body["maxDevices"], body["activeDevices"], body["devicesOverLimit"]) == (2, 3, 1)
    assert body["deviceLimitMessage"] == ("Your plan now allows 2 devices. 3 devices are active and keep working; "
                                          "deactivate 2 to activate a new one.")
    change_plan(team.customer, "price_sandbox_team")
    body = by_token(api, token)
    assert (body["maxDevices"], body["activeDevices"], body["devicesOverLimit"], body["deviceLimitMessage"]) == (
        10, 3, 0, None)


@pytest.fixture
def signs(monkeypatch):
    calls = []
    real = license_api.token_sign

    def counting(*args, **kwargs):
        calls.append(kwargs["typ"])
        return real(*args, **kwargs)

    monkeypatch.setattr(license_api, "token_sign", counting)
    return calls


def test_the_cached_answer_sees_another_device_freeing_a_seat_on_the_very_next_call(
        api, team, signs, django_assert_num_queries):
    for device in ("a", "b", "c"):
        activate(api, team, device)
    token = activate(api, team, "a").json()["deviceAccessToken"]
    change_plan(team.customer, "price_sandbox_pro")
    by_token(api, token)
    signs.clear()
    assert by_token(api, token)["devicesOverLimit"] == 2 and signs == []  # served from the cache

    deactivate(api, team, "b")  # another device: this device's activation row did not change
    with django_assert_num_queries(1):  # still the one statement: the count is in the licence's row
        body = by_token(api, token)
    assert (body["activeDevices"], body["devicesOverLimit"]) == (2, 1)
    assert body["deviceLimitMessage"].startswith("Your plan now allows 1 device. 2 devices are active")

    c = DeviceActivation.objects.get(license=team, device_id="c")
    device_activation_revoke(activation=c, actor_type=SUPPORT, actor="support")  # support's revoke, the same
    body = by_token(api, token)
    assert (body["activeDevices"], body["devicesOverLimit"], body["deviceLimitMessage"]) == (1, 0, None)


def test_the_words_are_not_given_while_the_licence_does_not_work(api, team, client):
    for device in ("a", "b", "c"):
        activate(api, team, device)
    token = activate(api, team, "a").json()["deviceAccessToken"]
    change_plan(team.customer, "price_sandbox_pro")
    Customer.objects.filter(pk=team.customer_id).update(access_state=Customer.AccessState.HARD_LOCKED)
    body = by_token(api, token)
    assert (body["active"], body["devicesOverLimit"], body["deviceLimitMessage"]) == (False, 2, None)
    manage = client.get(f"/manage/{manage_link_token(team.customer)}/").content.decode()
    assert "keep working" not in manage and "3 of 1 device" in manage


def test_a_plan_change_repairs_a_count_that_drifted(plans, team):
    DeviceActivationFactory.create_batch(2, license=team)
    License.objects.filter(pk=team.pk).update(active_devices=7)  # written by something that bypassed the services
    Customer.objects.filter(pk=team.customer_id).update(plan="pro", price_id="price_sandbox_pro")
    team.customer.refresh_from_db()
    license_ensure(customer=team.customer, actor_type=SUPPORT)
    assert count(team) == 2


def test_the_migration_counts_the_devices_already_active():
    migration = importlib.import_module("licensing.migrations.0003_license_active_devices")
    busy, idle = LicenseFactory(), LicenseFactory()
    DeviceActivationFactory.create_batch(3, license=busy)
    DeviceActivationFactory(license=busy, deactivated_at="2026-01-01T00:00:00Z")
    DeviceActivationFactory(license=idle, deactivated_at="2026-01-01T00:00:00Z")
    License.objects.update(active_devices=0)
    migration.count_active_devices(django_apps, None)
    assert (count(busy), count(idle)) == (3, 0)


def test_only_the_licensing_services_write_a_device_activation():
    """Each write of an activation must also write its licence's active_devices (licensing/services.py)."""
    offenders = []
    for folder in ("billing_console", "licensing", "deployments", "dunning"):
        for path in (ROOT / folder).rglob("*.py"):
            if "migrations" in path.parts or path == ROOT / "licensing" / "services.py":
                continue
            tree = ast.parse(path.read_text())
            for node in ast.walk(tree):
                if isinstance(node, ast.keyword) and node.arg == "deactivated_at":
                    offenders.append(f"{path.relative_to(ROOT)}:{node.value.lineno} sets deactivated_at")
                if (isinstance(node, ast.Attribute) and node.attr in ("create", "bulk_create", "update", "delete")
                        and "DeviceActivation.objects" in ast.unparse(node.value)
                        or isinstance(node, ast.Attribute) and node.attr in ("update", "delete")
                        and "activations" in ast.unparse(node.value)):
                    offenders.append(f"{path.relative_to(ROOT)}:{node.lineno} {ast.unparse(node)}")
    assert offenders == []
