import pytest

from billing_console.models import AuditEvent
from deployments.models import Deployment
from tests.core.factories import SubscribedCustomerFactory
from tests.deployments.factories import DeploymentFactory

pytestmark = pytest.mark.django_db

ACCOUNT = "0c1a55e7d3b54f0e9c8a7b6d5e4f3a21"
GOOD_TOKEN = "cf_good_token_0123456789abcdef"


def _prefix(deployment):
    return f"d{deployment.pk.hex[:8]}"


def test_rotating_the_token_verifies_it_with_cloudflare_and_audits_the_customer(client, manage_url, cloudflare):
    deployment = DeploymentFactory(account_id=ACCOUNT, last_error_code="token_invalid", last_error_message="expired")
    cloudflare.add_token(GOOD_TOKEN, ACCOUNT)
    customer = deployment.customer
    response = client.post(manage_url(customer, f"deployments/{deployment.pk}/token"),
                           {f"{_prefix(deployment)}-api_token": GOOD_TOKEN})
    assert response.status_code == 303
    deployment.refresh_from_db()
    assert deployment.api_token == GOOD_TOKEN and deployment.token_last4 == GOOD_TOKEN[-4:]
    assert deployment.last_error_code == ""
    event = AuditEvent.objects.get(action="deployment.token_rotated")
    assert (event.actor_type, event.actor) == ("customer", customer.email)
    assert GOOD_TOKEN not in client.get(manage_url(customer)).content.decode()


def test_a_token_cloudflare_rejects_is_not_saved_and_the_error_shows_on_the_field(client, manage_url, cloudflare):
    deployment = DeploymentFactory(account_id=ACCOUNT)
    before = deployment.api_token_encrypted
    cloudflare.add_token("cf_revoked_token_0123456789ab", ACCOUNT, status="revoked")
    response = client.post(manage_url(deployment.customer, f"deployments/{deployment.pk}/token"),
                           {f"{_prefix(deployment)}-api_token": "cf_revoked_token_0123456789ab"})
    assert response.status_code == 400
    assert 'class="field-error"' in response.content.decode()
    deployment.refresh_from_db()
    assert deployment.api_token_encrypted == before
    assert not AuditEvent.objects.filter(action="deployment.token_rotated").exists()


def test_a_malformed_token_gets_a_field_error_without_calling_cloudflare(client, manage_url, cloudflare):
    deployment = DeploymentFactory(account_id=ACCOUNT)
    response = client.post(manage_url(deployment.customer, f"deployments/{deployment.pk}/token"),
                           {f"{_prefix(deployment)}-api_token": "short"})
    assert response.status_code == 400
    assert "Paste the Cloudflare API token" in response.content.decode()


def test_an_empty_token_is_a_field_error(client, manage_url, cloudflare):
    deployment = DeploymentFactory(account_id=ACCOUNT)
    response = client.post(manage_url(deployment.customer, f"deployments/{deployment.pk}/token"), {})
    assert response.status_code == 400
    assert "This field is required." in response.content.decode()


def test_pause_and_resume_from_the_manage_page(client, manage_url):
    deployment = DeploymentFactory()
    customer = deployment.customer
    assert client.post(manage_url(customer, f"deployments/{deployment.pk}/pause")).status_code == 303
    deployment.refresh_from_db()
    assert deployment.paused and deployment.status == Deployment.Status.PAUSED
    body = client.get(manage_url(customer)).content.decode()
    assert "Updates are paused" in body and "Resume updates" in body
    assert client.post(manage_url(customer, f"deployments/{deployment.pk}/resume")).status_code == 303
    deployment.refresh_from_db()
    assert not deployment.paused
    actions = list(AuditEvent.objects.filter(actor_type="customer").values_list("action", flat=True).order_by("at"))
    assert actions == ["deployment.paused", "deployment.resumed"]


def test_resume_refused_by_the_service_is_explained(client, manage_url):
    deployment = DeploymentFactory(paused=True, paused_by=Deployment.PausedBy.AUTH_FAILURES, consecutive_auth_failures=3)
    response = client.post(manage_url(deployment.customer, f"deployments/{deployment.pk}/resume"), follow=True)
    assert "rotate or verify" in response.content.decode()
    deployment.refresh_from_db()
    assert deployment.paused


def test_cannot_touch_another_customers_deployment(client, manage_url):
    mine = SubscribedCustomerFactory()
    theirs = DeploymentFactory()
    assert client.post(manage_url(mine, f"deployments/{theirs.pk}/pause")).status_code == 404
    theirs.refresh_from_db()
    assert not theirs.paused


def test_deploy_page_connects_a_cloudflare_account(client, manage_url, cloudflare, bundles):
    customer = SubscribedCustomerFactory()
    cloudflare.add_token(GOOD_TOKEN, ACCOUNT)
    page = client.get(manage_url(customer, "deploy/"))
    assert page.status_code == 200 and "Connect your Cloudflare account" in page.content.decode()
    response = client.post(manage_url(customer, "deploy/"),
                           {"account_id": ACCOUNT, "script_name": "acme-app", "api_token": GOOD_TOKEN})
    assert response.status_code == 303
    deployment = Deployment.objects.get(customer=customer)
    assert deployment.script_name == "acme-app"
    assert AuditEvent.objects.get(action="deployment.created").actor_type == "customer"
    body = client.get(manage_url(customer, "deploy/")).content.decode()
    assert "Almost there" in body and "on its way" in body  # the first push is queued, not yet run


def test_connecting_an_account_publishes_the_manifests_release_at_once(client, manage_url, cloudflare, bundles,
                                                                        django_capture_on_commit_callbacks, monkeypatch):
    """A fresh install: no hourly run has read the manifest. Connecting reads it and pushes right after the save."""
    from django_q.conf import Conf

    from deployments.models import BundleRelease, PublishVersion

    monkeypatch.setattr(Conf, "SYNC", True)
    assert not BundleRelease.objects.exists()
    customer = SubscribedCustomerFactory()
    cloudflare.add_token(GOOD_TOKEN, ACCOUNT)
    with django_capture_on_commit_callbacks(execute=True):
        response = client.post(manage_url(customer, "deploy/"),
                               {"account_id": ACCOUNT, "script_name": "acme-app", "api_token": GOOD_TOKEN})
    assert response.status_code == 303
    deployment = Deployment.objects.get(customer=customer)
    assert deployment.current_version == "v1.0.0" and deployment.status == Deployment.Status.ACTIVE
    publish = deployment.publishes.get()
    assert (publish.status, publish.version) == (PublishVersion.Status.LIVE, "v1.0.0")
    assert [(u.account_id, u.script_name) for u in cloudflare.uploads] == [(ACCOUNT, "acme-app")]
    body = client.get(manage_url(customer, "deploy/")).content.decode()
    assert "readiness-live" in body and "release v1.0.0" in body


def test_the_deploy_page_reads_the_manifest_before_any_hourly_run(client, manage_url, bundles):
    from deployments.selectors import latest_release

    assert latest_release() is None
    assert client.get(manage_url(SubscribedCustomerFactory(), "deploy/")).status_code == 200
    assert latest_release().version == "v1.0.0"


def test_an_unreadable_manifest_leaves_the_deploy_page_working_and_is_retried_after_a_minute(client, manage_url, bundles):
    from deployments import releases
    from deployments.selectors import latest_release

    bundles.unpublish_latest()
    url = manage_url(SubscribedCustomerFactory(), "deploy/")
    assert client.get(url).status_code == 200 and latest_release() is None
    bundles.set_latest("v1.0.0")
    client.get(url)
    assert latest_release() is None  # not asked again within the minute
    releases._failed_reads[bundles.manifest_url()] -= releases.MANIFEST_FRESH_SECONDS
    client.get(url)
    assert latest_release().version == "v1.0.0"


@pytest.mark.parametrize("state,title", [("live", "Live"), ("failed", "Failed")])
def test_readiness_panel(client, manage_url, bundles, state, title):
    from deployments.releases import release_record
    from deployments.manifest import manifest_fetch

    release_record(manifest_fetch())
    kwargs = ({"current_version": "v1.0.0"} if state == "live"
              else {"last_error_code": "account_suspended", "last_error_message": "Account suspended"})
    deployment = DeploymentFactory(**kwargs)
    deployment.status = deployment.derived_status()
    deployment.save()
    body = client.get(manage_url(deployment.customer, "deploy/")).content.decode()
    assert f"readiness-{state}" in body and title in body


def test_readiness_failed_when_the_console_is_not_configured(client, manage_url, settings):
    settings.HELM_BUNDLE_MANIFEST_URL = ""
    customer = SubscribedCustomerFactory()
    body = client.get(manage_url(customer, "deploy/")).content.decode()
    assert "readiness-failed" in body


def test_a_customer_cannot_resume_a_pause_support_set(client, manage_url):
    from deployments.services import deployment_pause

    deployment = DeploymentFactory()
    deployment_pause(deployment=deployment, actor_type="admin", actor="sam", reason="abuse report")
    page = client.get(manage_url(deployment.customer)).content.decode()
    assert "Contact support to resume" in page and "Resume updates" not in page
    response = client.post(manage_url(deployment.customer, f"deployments/{deployment.pk}/resume"), follow=True)
    deployment.refresh_from_db()
    assert deployment.paused and deployment.paused_by == Deployment.PausedBy.MANUAL
    assert "Support paused updates" in response.content.decode()
    # The customer pausing again does not take support's pause over either.
    client.post(manage_url(deployment.customer, f"deployments/{deployment.pk}/pause"))
    deployment.refresh_from_db()
    assert deployment.paused_by == Deployment.PausedBy.MANUAL and deployment.paused_reason == "abuse report"


def test_the_customers_own_pause_is_theirs_to_resume_and_support_can_take_it_over(client, manage_url):
    from deployments.services import deployment_pause

    deployment = DeploymentFactory()
    client.post(manage_url(deployment.customer, f"deployments/{deployment.pk}/pause"))
    deployment.refresh_from_db()
    assert deployment.paused_by == Deployment.PausedBy.CUSTOMER
    client.post(manage_url(deployment.customer, f"deployments/{deployment.pk}/resume"))
    deployment.refresh_from_db()
    assert not deployment.paused

    client.post(manage_url(deployment.customer, f"deployments/{deployment.pk}/pause"))
    deployment_pause(deployment=deployment, actor_type="admin", actor="sam", reason="support hold")
    deployment.refresh_from_db()
    assert deployment.paused_by == Deployment.PausedBy.MANUAL
    client.post(manage_url(deployment.customer, f"deployments/{deployment.pk}/resume"))
    deployment.refresh_from_db()
    assert deployment.paused


def test_repeated_posts_to_the_deploy_form_make_one_deployment(client, manage_url, cloudflare, bundles):
    customer = SubscribedCustomerFactory()
    cloudflare.add_token(GOOD_TOKEN, ACCOUNT)
    form = {"account_id": ACCOUNT, "script_name": "acme-app", "api_token": GOOD_TOKEN}
    codes = [client.post(manage_url(customer, "deploy/"), form).status_code for _ in range(3)]
    assert codes[0] == 303 and codes[1:] == [400, 400]
    assert Deployment.objects.filter(customer=customer).count() == 1


def test_a_direct_post_with_a_second_account_id_is_refused(client, manage_url, cloudflare, bundles):
    other, other_token = "f" * 32, "cf_other_token_0123456789abcd"
    customer = SubscribedCustomerFactory()
    DeploymentFactory(customer=customer, account_id=ACCOUNT)
    cloudflare.add_token(other_token, other)
    page = client.get(manage_url(customer, "deploy/")).content.decode()
    assert "Connect your Cloudflare account" not in page  # no form once the plan's deployment exists
    response = client.post(manage_url(customer, "deploy/"),
                           {"account_id": other, "script_name": "second", "api_token": other_token})
    assert response.status_code == 400
    assert "includes 1 managed deployment" in response.content.decode()
    assert list(Deployment.objects.filter(customer=customer).values_list("account_id", flat=True)) == [ACCOUNT]
    assert not AuditEvent.objects.filter(action="deployment.created").exists()
