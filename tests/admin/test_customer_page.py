"""The customer page as one screen, and every app's actions run from it by a support user."""
import pytest

from billing_console.models import AuditEvent, WebhookEvent
from deployments.models import Deployment
from licensing.models import License
from tests.stripe.factories import WebhookEventFactory
from tests.core.factories import SubscribedCustomerFactory
from tests.deployments.factories import DeploymentFactory
from tests.licensing.factories import DeviceActivationFactory, LicenseFactory

pytestmark = pytest.mark.django_db


def _page(client, customer):
    return f"/admin/billing_console/customer/{customer.pk}/change/"


def _act(client, customer, label, action, obj, **extra):
    app, model = label.split(".")
    return client.post(f"/admin/customer-actions/{customer.pk}/{app}/{model}/",
                       {"action": action, "_selected_action": obj.pk, **extra})


def test_customer_page_shows_identity_entitlement_and_stripe_links_in_test_mode(support_client):
    customer = SubscribedCustomerFactory(email="ivy@example.com", subscription_id="sub_ivy1")
    customer.stripe_customer_id = "cus_ivy1"
    customer.save()
    LicenseFactory(customer=customer)
    DeploymentFactory(customer=customer, script_name="ivy-app")
    body = support_client.get(_page(support_client, customer)).content.decode()
    assert "ivy@example.com" in body and "Pro is active" in body
    assert "https://dashboard.stripe.com/test/customers/cus_ivy1" in body
    assert "https://dashboard.stripe.com/test/subscriptions/sub_ivy1" in body
    assert "https://dashboard.stripe.com/test/invoices?customer=cus_ivy1" in body
    assert "Pause pushes" in body and "Suspend selected licences" in body  # the apps' actions, right here


def test_stripe_links_follow_live_mode(admin_client, settings):
    settings.STRIPE_LIVE_MODE = True
    customer = SubscribedCustomerFactory()
    customer.stripe_customer_id = "cus_live1"
    customer.save()
    body = admin_client.get(_page(admin_client, customer)).content.decode()
    assert "https://dashboard.stripe.com/customers/cus_live1" in body and "/test/" not in body


def test_support_pauses_a_deployment_from_the_customer_page(support_client, support_user):
    deployment = DeploymentFactory()
    customer = deployment.customer
    response = _act(support_client, customer, "deployments.deployment", "pause", deployment)
    assert response.status_code == 302 and response["Location"] == _page(support_client, customer)
    deployment.refresh_from_db()
    assert deployment.paused and deployment.status == Deployment.Status.PAUSED
    event = AuditEvent.objects.get(action="deployment.paused")
    assert (event.actor_type, event.actor) == ("admin", support_user.username)
    assert "1 deployment paused" in support_client.get(response["Location"]).content.decode()


def test_support_runs_the_runbook_actions(support_client):
    """Revoke a device, suspend a licence, revoke manage links, replay a failed Stripe event."""
    activation = DeviceActivationFactory()
    lic = activation.license
    customer = lic.customer
    assert _act(support_client, customer, "licensing.deviceactivation", "revoke_device", activation).status_code == 302
    activation.refresh_from_db()
    assert not activation.is_active
    assert _act(support_client, customer, "licensing.license", "suspend", lic).status_code == 302
    lic.refresh_from_db()
    assert lic.status == License.Status.SUSPENDED
    salt = customer.manage_salt
    assert _act(support_client, customer, "billing_console.customer", "revoke_manage_links", customer).status_code == 302
    customer.refresh_from_db()
    assert customer.manage_salt != salt
    event = WebhookEventFactory(status=WebhookEvent.Status.FAILED, type="customer.updated")
    response = support_client.post("/admin/billing_console/webhookevent/",
                                   {"action": "replay", "_selected_action": event.pk, "index": 0})
    assert response.status_code == 302
    event.refresh_from_db()
    assert event.attempts >= 1


def test_an_action_on_another_customers_row_changes_nothing(support_client):
    mine = SubscribedCustomerFactory()
    theirs = DeploymentFactory()
    response = _act(support_client, mine, "deployments.deployment", "pause", theirs)
    assert response.status_code == 302
    theirs.refresh_from_db()
    assert not theirs.paused


@pytest.mark.parametrize("action", ["delete_selected", "no_such_action"])
def test_delete_and_unknown_actions_are_refused(support_client, action):
    deployment = DeploymentFactory()
    _act(support_client, deployment.customer, "deployments.deployment", action, deployment)
    assert Deployment.objects.filter(pk=deployment.pk, paused=False).exists()


def test_relay_needs_post_and_a_known_model(support_client):
    customer = SubscribedCustomerFactory()
    assert support_client.get(f"/admin/customer-actions/{customer.pk}/deployments/deployment/").status_code == 405
    assert support_client.post(f"/admin/customer-actions/{customer.pk}/auth/user/",
                               {"action": "x", "_selected_action": 1}).status_code == 404
    assert support_client.post(f"/admin/customer-actions/{customer.pk}/nope/nothing/",
                               {"action": "x", "_selected_action": 1}).status_code == 404


def test_relay_needs_a_staff_login(client):
    deployment = DeploymentFactory()
    response = client.post(f"/admin/customer-actions/{deployment.customer.pk}/deployments/deployment/",
                           {"action": "pause", "_selected_action": deployment.pk})
    assert response.status_code == 302 and "/admin/login/" in response["Location"]
    deployment.refresh_from_db()
    assert not deployment.paused


def test_support_never_sees_a_token_or_its_ciphertext(support_client):
    deployment = DeploymentFactory()
    for url in (_page(support_client, deployment.customer), f"/admin/deployments/deployment/{deployment.pk}/change/",
                "/admin/deployments/deployment/"):
        body = support_client.get(url).content.decode()
        assert deployment.api_token not in body
        assert deployment.api_token_encrypted[:40] not in body


def test_customer_list_search_finds_by_device_id_key_prefix_and_script_name(support_client):
    activation = DeviceActivationFactory(device_id="dev-unique-77")
    customer = activation.license.customer
    deployment = DeploymentFactory(customer=customer, script_name="uniq-script")
    other = SubscribedCustomerFactory()
    for term in ("dev-unique-77", activation.license.key_prefix, "uniq-script", activation.license.key):
        body = support_client.get("/admin/billing_console/customer/", {"q": term}).content.decode()
        assert customer.email in body and other.email not in body, term
    assert deployment.pk
