import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.urls import reverse

from billing_console.models import AuditEvent
from deployments import tasks
from deployments.models import Deployment, PublishVersion
from tests.deployments.conftest import BUNDLE_V2
from tests.deployments.factories import DeploymentFactory

pytestmark = pytest.mark.django_db
CHANGELIST = reverse("admin:deployments_deployment_changelist")


@pytest.fixture
def staff(admin_client):
    return admin_client


def changelist_queries(client, url=CHANGELIST):
    client.get(url)  # warm per-process caches (content types) so only the page's own queries are counted
    with CaptureQueriesContext(connection) as ctx:
        response = client.get(url)
    assert response.status_code == 200
    return len(ctx.captured_queries)


@pytest.mark.parametrize("url", [CHANGELIST, CHANGELIST + "?push=behind", reverse("admin:deployments_publishversion_changelist")])
def test_changelists_use_the_same_number_of_queries_for_1_and_50_rows(staff, url):
    deployment = DeploymentFactory()
    PublishVersion.objects.create(deployment=deployment, number=1, version="v1")
    one = changelist_queries(staff, url)
    for n in range(49):
        PublishVersion.objects.create(deployment=DeploymentFactory(), number=1, version="v1")
    assert changelist_queries(staff, url) == one


def test_customer_page_query_count_does_not_grow_with_deployments(staff):
    deployment = DeploymentFactory()
    url = reverse("admin:billing_console_customer_change", args=[deployment.customer_id])
    one = changelist_queries(staff, url)
    for _ in range(9):
        DeploymentFactory(customer=deployment.customer)
    assert changelist_queries(staff, url) == one


def test_the_token_never_appears_in_admin_pages(staff, make_deployment):
    deployment = make_deployment()
    token = deployment.api_token
    pages = [CHANGELIST, reverse("admin:deployments_deployment_change", args=[deployment.pk]),
             reverse("admin:billing_console_customer_change", args=[deployment.customer_id]),
             reverse("admin:billing_console_auditevent_changelist")]
    for url in pages:
        html = staff.get(url).content.decode()
        assert token not in html and deployment.api_token_encrypted not in html, url
        assert token[:12] not in html, url
    assert "…" + token[-4:] in staff.get(pages[1]).content.decode()


def post_action(client, action, deployments, **extra):
    return client.post(CHANGELIST, {"action": action, "_selected_action": [str(d.pk) for d in deployments], **extra},
                       follow=True)


def test_pause_and_resume_actions_are_audited(staff, make_deployment):
    deployment = make_deployment()
    response = post_action(staff, "pause", [deployment])
    assert "1 deployment paused" in response.content.decode()
    deployment.refresh_from_db()
    assert deployment.paused
    post_action(staff, "resume", [deployment])
    deployment.refresh_from_db()
    assert not deployment.paused
    assert list(AuditEvent.objects.filter(actor="admin").order_by("at").values_list("action", flat=True)) == [
        "deployment.paused", "deployment.resumed"]


def test_resume_action_reports_why_a_token_stop_cannot_resume(staff, make_deployment):
    deployment = make_deployment(paused=True, paused_by=Deployment.PausedBy.AUTH_FAILURES, consecutive_auth_failures=3)
    html = post_action(staff, "resume", [deployment]).content.decode()
    assert "0 deployments resumed" in html and "rotate or verify" in html


def test_push_now_requeue_and_verify_actions(staff, cloudflare, bundles, make_deployment, django_capture_on_commit_callbacks):
    deployment = make_deployment()
    cloudflare.fail_next(500, account_id=deployment.account_id)
    tasks.push_deployments()
    with django_capture_on_commit_callbacks(execute=True):
        html = post_action(staff, "requeue_failed", [deployment]).content.decode()
    assert "1 deployment requeued" in html
    deployment.refresh_from_db()
    assert deployment.current_version == "v1.0.0"
    with django_capture_on_commit_callbacks(execute=True):
        post_action(staff, "push_now", [deployment])
    assert deployment.publishes.count() == 3 and len(cloudflare.uploads) == 2
    html = post_action(staff, "verify_token", [deployment]).content.decode()
    assert "1 token valid." in html
    assert AuditEvent.objects.filter(action="deployment.token_verified", actor="admin").exists()


def test_push_now_on_a_fresh_install_reads_the_manifest_itself(staff, cloudflare, bundles, make_deployment,
                                                                django_capture_on_commit_callbacks):
    deployment = make_deployment()  # no hourly run yet: no release recorded
    with django_capture_on_commit_callbacks(execute=True):
        html = post_action(staff, "push_now", [deployment]).content.decode()
    assert "1 deployment queued for a push" in html and "No release to push" not in html
    deployment.refresh_from_db()
    assert deployment.current_version == "v1.0.0" and len(cloudflare.uploads) == 1


def test_rollback_action_asks_for_a_version_then_rolls_back(staff, cloudflare, bundles, make_deployment,
                                                             django_capture_on_commit_callbacks):
    deployment = make_deployment()
    tasks.push_deployments()
    bundles.publish("v2.0.0", BUNDLE_V2)
    tasks.push_deployments()
    form = post_action(staff, "rollback", [deployment])
    html = form.content.decode()
    assert "Roll back to" in html and 'value="n:1"' in html
    with django_capture_on_commit_callbacks(execute=True):
        done = post_action(staff, "rollback", [deployment], apply="1", target="n:1")
    assert "rolled back to #1" in done.content.decode()
    deployment.refresh_from_db()
    assert deployment.current_version == "v1.0.0" and deployment.pinned_version == "v1.0.0"


def test_rollback_action_rejects_a_forged_choice(staff, cloudflare, bundles, make_deployment):
    deployment = make_deployment()
    tasks.push_deployments()
    response = post_action(staff, "rollback", [deployment], apply="1", target="n:99")
    assert "Select a valid choice" in response.content.decode()
    assert deployment.publishes.count() == 1


def test_filters_find_errored_paused_and_behind(staff, cloudflare, bundles, make_deployment):
    behind = make_deployment()
    errored = make_deployment(token_status="revoked")
    tasks.push_deployments()
    bundles.publish("v2.0.0", BUNDLE_V2)
    tasks.push_deployments()  # records v2 as latest; both fail or succeed below
    Deployment.objects.filter(pk=behind.pk).update(current_version="v1.0.0")
    paused = make_deployment(paused=True, paused_by="manual")
    for value, expected, absent in (("errored", errored, paused), ("paused", paused, errored), ("behind", behind, None)):
        html = staff.get(CHANGELIST + f"?push={value}").content.decode()
        assert expected.script_name in html, value
        if absent:
            assert absent.script_name not in html, value


def test_replace_account_action_asks_then_moves_the_deployment(staff, cloudflare, make_deployment):
    deployment = make_deployment(account_id="a" * 32)
    cloudflare.add_token("cfNewAccountToken_" + "N" * 20, "c" * 32)
    page = staff.post(CHANGELIST, {"action": "replace_account", "_selected_action": [deployment.pk]})
    assert page.status_code == 200 and "Correct Cloudflare account id" in page.content.decode()
    bad = staff.post(CHANGELIST, {"action": "replace_account", "_selected_action": [deployment.pk], "apply": "1",
                                  "account_id": "zz", "api_token": "cfNewAccountToken_" + "N" * 20})
    assert bad.status_code == 200 and "32 hexadecimal characters" in bad.content.decode()
    staff.post(CHANGELIST, {"action": "replace_account", "_selected_action": [deployment.pk], "apply": "1",
                            "account_id": "c" * 32, "api_token": "cfNewAccountToken_" + "N" * 20, "reason": "typo"})
    deployment.refresh_from_db()
    assert deployment.account_id == "c" * 32
    assert AuditEvent.objects.get(action="deployment.account_replaced").actor_type == "admin"


def test_delete_is_only_the_audited_action(staff, make_deployment):
    deployment = make_deployment()
    assert staff.get(reverse("admin:deployments_deployment_delete", args=[deployment.pk])).status_code == 403
    no_reason = staff.post(CHANGELIST, {"action": "delete_audited", "_selected_action": [deployment.pk], "apply": "1"})
    assert no_reason.status_code == 200 and Deployment.objects.filter(pk=deployment.pk).exists()
    staff.post(CHANGELIST, {"action": "delete_audited", "_selected_action": [deployment.pk], "apply": "1",
                            "reason": "mistyped account"})
    assert not Deployment.objects.filter(pk=deployment.pk).exists()
    assert AuditEvent.objects.get(action="deployment.deleted").data["reason"] == "mistyped account"
