"""A deployment card never says "Live" nor offers a button that would refuse while the customer is not entitled:
the subscription's state decides its words, on the manage page, the deploy page and the support console alike
(billing_console.wording.deployment). Each test reads the rendered words."""
from datetime import timedelta

import pytest
from django.utils import timezone

from billing_console.models import Customer
from billing_console.selectors import customer_entitlement
from billing_console.wording.subscription import day
from deployments.models import BundleRelease, Deployment
from deployments.selectors import deployments_due
from deployments.services import deployments_sync_pauses
from tests.core.factories import SubscribedCustomerFactory
from tests.deployments.factories import DeploymentFactory

pytestmark = pytest.mark.django_db
A = Customer.AccessState
AGO = timedelta(days=3)


@pytest.fixture
def live_release(bundles):
    return BundleRelease.objects.create(version="v1.0.0", bundle_url="http://bundles.invalid/v1.0.0.js", sha256="0" * 64,
                                        size=1, last_seen_at=timezone.now())


def _unpaid():
    return SubscribedCustomerFactory(subscription_status="unpaid"), [
        "Updates stopped: the subscription is unpaid. Pay the open invoice and updates resume within the hour."]


def _paused():
    return SubscribedCustomerFactory(collection_paused=True), [
        "Updates stopped while billing is paused. Updates resume within the hour once the subscription resumes."]


def _expired():
    customer = SubscribedCustomerFactory(current_period_end=timezone.now() - timedelta(days=60))
    return customer, [f"Updates stopped: access expired on {day(customer_entitlement(customer).grace_ends_at)}. "
                      "Renew from the billing portal and updates resume within the hour."]


def _locked():
    return SubscribedCustomerFactory(subscription_status="past_due", access_state=A.HARD_LOCKED), [
        "Updates stopped: an invoice is overdue and access is locked. Pay the open invoice and updates resume "
        "within the hour."]


def _disputed():
    return SubscribedCustomerFactory(dispute_open=True), [
        "Updates stopped while a payment is disputed. Updates resume within the hour once the dispute is closed."]


def _ended():
    ended = timezone.now() - AGO
    customer = SubscribedCustomerFactory(subscription_status="canceled", access_state=A.CANCELED,
                                         access_state_changed_at=ended, current_period_end=ended)
    return customer, [f"Updates stopped: the subscription ended on {day(ended)}.",
                      "Subscribe again and updates resume by themselves within the hour."]


STATES = {"unpaid": _unpaid, "paused": _paused, "expired": _expired, "locked": _locked, "disputed": _disputed,
          "ended": _ended}


@pytest.fixture
def not_entitled(request, settings, live_release):
    settings.PAUSED_SUBSCRIPTION_ENTITLED = False
    settings.DISPUTE_LOCKS_ACCESS = True
    customer, words = STATES[request.param]()
    deployment = DeploymentFactory(customer=customer, current_version="v1.0.0", last_push_at=timezone.now() - AGO)
    deployments_sync_pauses(customer=customer)  # as the hourly run does first: pauses only locked and ended ones
    deployment.refresh_from_db()
    assert not customer_entitlement(customer).entitled
    return customer, deployment, words


def page(client, url) -> str:
    response = client.get(url)
    assert response.status_code == 200
    return response.content.decode().replace("&#x27;", "'")


def _card(body: str, deployment) -> str:
    start = body.index(f'id="deployment-{deployment.pk}"')
    return body[start:body.index("</section>\n", body.index("</section>", start) + 1)]


def test_an_entitled_customer_sees_live_and_the_pause_button(client, manage_url, live_release):
    deployment = DeploymentFactory(current_version="v1.0.0")
    card = _card(page(client, manage_url(deployment.customer)), deployment)
    assert "readiness-live" in card and ">Live<" in card and "Pause updates" in card
    assert '<span class="pill pill-active">Active</span>' in card and "Updates stopped" not in card


@pytest.mark.parametrize("not_entitled", list(STATES), indirect=True)
def test_the_manage_page_says_why_updates_stopped_and_offers_no_button_that_would_refuse(client, manage_url,
                                                                                         not_entitled):
    customer, deployment, words = not_entitled
    assert deployment.pk not in {pk for pk, _ in deployments_due(latest_version="v2.0.0")}  # the words are true
    card = _card(page(client, manage_url(customer)), deployment)
    for line in words:
        assert line in card
    assert "Your Worker keeps running the version it has." in card
    assert "readiness-live" not in card and ">Live<" not in card and "✓" not in card
    assert "readiness-stopped" in card and ">Updates stopped<" in card
    assert "pill-active" not in card and ">Active<" not in card
    assert "Resume updates" not in card and "/resume" not in card
    assert "at the next hourly run" not in card and "Updates are back on" not in card


@pytest.mark.parametrize("not_entitled", ["unpaid", "ended"], indirect=True)
def test_the_deploy_page_says_the_same(client, manage_url, not_entitled):
    customer, deployment, words = not_entitled
    body = page(client, manage_url(customer, "deploy/"))
    assert words[0] in body and "readiness-live" not in body and ">Live<" not in body


@pytest.mark.parametrize("not_entitled", list(STATES), indirect=True)
def test_the_support_console_shows_the_same_truth(admin_client, not_entitled):
    customer, deployment, words = not_entitled
    for url in (f"/admin/deployments/deployment/{deployment.pk}/change/",
                f"/admin/billing_console/customer/{customer.pk}/change/"):
        body = page(admin_client, url)
        for line in words:
            assert line in body, url


@pytest.mark.parametrize("not_entitled", ["unpaid", "ended"], indirect=True)
def test_the_customers_own_pause_stays_resumable_and_says_updates_still_wait(client, manage_url, not_entitled):
    customer, deployment, words = not_entitled
    client.post(manage_url(customer, f"deployments/{deployment.pk}/pause"))
    deployment.refresh_from_db()
    assert deployment.paused_by == Deployment.PausedBy.CUSTOMER
    card = _card(page(client, manage_url(customer)), deployment)
    assert words[0] in card and "Resume updates" in card
    assert "Resuming lifts your own pause; updates still wait for the subscription" in card
    response = client.post(manage_url(customer, f"deployments/{deployment.pk}/resume"), follow=True)
    assert "Your pause is lifted. Updates come back once the subscription gives access again." in \
        response.content.decode()
    deployment.refresh_from_db()
    assert not deployment.paused or deployment.paused_by == Deployment.PausedBy.AUTO_LOCK


@pytest.mark.parametrize("not_entitled", ["unpaid"], indirect=True)
def test_supports_pause_of_a_not_entitled_customer_says_both_and_offers_no_resume(client, manage_url, not_entitled):
    customer, deployment, words = not_entitled
    Deployment.objects.filter(pk=deployment.pk).update(paused=True, paused_by=Deployment.PausedBy.MANUAL,
                                                       paused_reason="Paused by support")
    card = _card(page(client, manage_url(customer)), deployment)
    assert words[0] in card and "Support paused updates to this deployment. Contact support to resume them." in card
    assert "Resume updates" not in card and "/resume" not in card
