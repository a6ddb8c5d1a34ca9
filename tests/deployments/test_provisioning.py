import pytest

from billing_console.errors import ServiceError
from billing_console.models import AuditEvent
from deployments import tasks
from deployments.models import Deployment, ErrorCode
from deployments.services import deployment_create, deployment_rotate_token, deployment_verify_token
from tests.core.factories import CustomerFactory, SubscribedCustomerFactory

pytestmark = pytest.mark.django_db
TOKEN = "goodToken_" + "A" * 30
ACCOUNT = "a" * 32


def create(customer, **overrides):
    args = {"account_id": ACCOUNT, "script_name": "helm", "api_token": TOKEN, "actor_type": "admin", "actor": "support"}
    return deployment_create(customer=customer, **{**args, **overrides})


def test_create_verifies_the_token_and_keeps_only_its_last_four_characters(cloudflare):
    cloudflare.add_token(TOKEN, ACCOUNT)
    customer = SubscribedCustomerFactory()
    deployment = create(customer)

    deployment = Deployment.objects.get(pk=deployment.pk)
    assert deployment.api_token == TOKEN and TOKEN not in deployment.api_token_encrypted
    assert deployment.token_last4 == "AAAA" and deployment.token_set_at
    assert deployment.status == Deployment.Status.ACTIVE
    event = AuditEvent.objects.get(action="deployment.created")
    assert event.customer == customer and TOKEN not in str(event.data)


def test_a_token_cloudflare_rejects_is_never_saved(cloudflare):
    cloudflare.add_token(TOKEN, ACCOUNT, status="revoked")
    with pytest.raises(ServiceError) as info:
        create(SubscribedCustomerFactory())
    assert "api_token" in info.value.fields and TOKEN not in str(info.value)
    assert not Deployment.objects.exists()


def test_an_account_owned_token_verifies_on_the_account_endpoint(cloudflare):
    # Unknown to /user/tokens/verify in real Cloudflare; the fake accepts both, so check the fallback path directly.
    cloudflare.add_token(TOKEN, ACCOUNT)
    cloudflare.fail_next(401, count=1)
    assert create(SubscribedCustomerFactory()).token_last4 == "AAAA"


@pytest.mark.parametrize("overrides, field", [
    ({"account_id": "not-an-account"}, "account_id"),
    ({"account_id": None}, "account_id"),
    ({"script_name": "Bad Name!"}, "script_name"),
    ({"script_name": ""}, "script_name"),
    ({"api_token": "short"}, "api_token"),
    ({"api_token": "has spaces in it " * 3}, "api_token"),
    ({"api_token": 12345}, "api_token"),
])
def test_create_rejects_bad_input_without_calling_cloudflare(cloudflare, overrides, field):
    with pytest.raises(ServiceError) as info:
        create(SubscribedCustomerFactory(), **overrides)
    assert field in info.value.fields
    assert not Deployment.objects.exists()


def test_create_requires_a_paying_customer(cloudflare):
    cloudflare.add_token(TOKEN, ACCOUNT)
    with pytest.raises(ServiceError) as info:
        create(CustomerFactory())
    assert "customer" in info.value.fields


def test_create_refuses_a_second_deployment_of_the_same_script(cloudflare):
    cloudflare.add_token(TOKEN, ACCOUNT)
    create(SubscribedCustomerFactory())
    with pytest.raises(ServiceError) as info:
        create(SubscribedCustomerFactory())
    assert "script_name" in info.value.fields and Deployment.objects.count() == 1


def test_rotating_the_token_clears_the_error_and_the_auth_stop(settings, cloudflare, bundles, make_deployment):
    settings.DEPLOY_MAX_AUTH_FAILURES = 2
    deployment = make_deployment(token_status="revoked")
    tasks.push_deployments()
    tasks.push_deployments()
    deployment.refresh_from_db()
    assert deployment.stopped_for_auth and deployment.last_error_code == ErrorCode.TOKEN_INVALID

    fresh = "freshToken_" + "Z" * 29
    cloudflare.add_token(fresh, deployment.account_id)
    deployment = deployment_rotate_token(deployment=deployment, api_token=fresh, actor_type="customer", actor="c@example.com")
    assert not deployment.paused and deployment.status == Deployment.Status.ACTIVE
    assert deployment.last_error_code == "" and deployment.consecutive_auth_failures == 0
    assert deployment.token_last4 == "ZZZZ"
    assert AuditEvent.objects.filter(action="deployment.token_rotated", actor_type="customer").count() == 1

    assert tasks.push_deployments()["pushed"] == 1  # the next run picks it up
    assert cloudflare.uploads[-1].token == fresh


def test_rotating_to_a_rejected_token_changes_nothing(cloudflare, make_deployment):
    deployment = make_deployment()
    before = deployment.api_token_encrypted
    with pytest.raises(ServiceError):
        deployment_rotate_token(deployment=deployment, api_token="unknownToken_" + "B" * 27, actor_type="admin")
    deployment.refresh_from_db()
    assert deployment.api_token_encrypted == before


def test_rotating_rejects_malformed_input(cloudflare, make_deployment):
    deployment = make_deployment()
    for bad in ("", None, "x" * 500, "tab\tinside-token-value-0000"):
        with pytest.raises(ServiceError):
            deployment_rotate_token(deployment=deployment, api_token=bad, actor_type="admin")


def test_verify_token_clears_a_stop_once_the_scope_is_fixed(settings, cloudflare, bundles, make_deployment):
    settings.DEPLOY_MAX_AUTH_FAILURES = 1
    deployment = make_deployment(scopes=())
    tasks.push_deployments()
    deployment.refresh_from_db()
    assert deployment.stopped_for_auth and deployment.last_error_code == ErrorCode.TOKEN_SCOPE

    cloudflare.add_token(deployment.api_token, deployment.account_id)  # the customer fixed the permission
    deployment, error = deployment_verify_token(deployment=deployment, actor_type="admin", actor="support")
    assert error is None and not deployment.paused and deployment.last_error_code == ""


def test_verify_token_records_a_rejection(cloudflare, make_deployment):
    deployment = make_deployment(token_status="expired")
    deployment, error = deployment_verify_token(deployment=deployment, actor_type="admin", actor="support")
    assert error.code == ErrorCode.TOKEN_INVALID
    assert deployment.last_error_code == ErrorCode.TOKEN_INVALID and deployment.status == Deployment.Status.ERRORED


def test_a_restored_shell_waits_for_a_token_and_rotation_resumes_it(cloudflare):
    from deployments.services import deployment_restore_shell, deployment_resume

    customer = SubscribedCustomerFactory()
    shell, created = deployment_restore_shell(customer=customer, account_id=ACCOUNT, script_name="helm", actor_type="system")
    assert created and shell.paused and shell.paused_by == Deployment.PausedBy.NO_TOKEN
    with pytest.raises(ServiceError, match="No Cloudflare token"):
        deployment_resume(deployment=shell, actor_type="admin")
    cloudflare.add_token(TOKEN, ACCOUNT)
    shell = deployment_rotate_token(deployment=shell, api_token=TOKEN, actor_type="customer", actor="c@example.com")
    assert not shell.paused and shell.status == Deployment.Status.ACTIVE and shell.token_last4 == "AAAA"


OTHER_ACCOUNT = "b" * 32


def test_a_token_of_another_account_cannot_claim_this_account_id(cloudflare):
    """The token verifies (it is someone's valid token), but it has no access to the account named: refused."""
    cloudflare.add_token(TOKEN, OTHER_ACCOUNT)
    with pytest.raises(ServiceError) as info:
        create(SubscribedCustomerFactory(), account_id=ACCOUNT)
    assert info.value.fields["api_token"].startswith("The API token is valid but lacks Workers Scripts:Edit")
    assert not Deployment.objects.exists()
    # The owner of that account can still connect it under the script name.
    cloudflare.add_token("ownerToken_" + "C" * 30, ACCOUNT)
    assert create(SubscribedCustomerFactory(), api_token="ownerToken_" + "C" * 30).account_id == ACCOUNT


def test_a_token_without_workers_scope_is_refused_on_create_and_on_rotation(cloudflare, make_deployment):
    cloudflare.add_token(TOKEN, ACCOUNT, scopes=())
    with pytest.raises(ServiceError):
        create(SubscribedCustomerFactory())
    deployment = make_deployment()
    before = deployment.api_token_encrypted
    with pytest.raises(ServiceError) as info:
        deployment_rotate_token(deployment=deployment, api_token=TOKEN, actor_type="customer", actor="c")
    assert "lacks Workers Scripts:Edit" in info.value.fields["api_token"]
    assert Deployment.objects.get(pk=deployment.pk).api_token_encrypted == before
    assert not AuditEvent.objects.filter(action="deployment.token_rotated").exists()


def test_rotation_to_a_token_of_another_account_is_refused(cloudflare, make_deployment):
    deployment = make_deployment()
    cloudflare.add_token(TOKEN, OTHER_ACCOUNT)
    with pytest.raises(ServiceError):
        deployment_rotate_token(deployment=deployment, api_token=TOKEN, actor_type="customer", actor="c")


def test_the_check_lists_the_accounts_worker_scripts_with_the_token(cloudflare):
    cloudflare.add_token(TOKEN, ACCOUNT)
    create(SubscribedCustomerFactory())
    assert (ACCOUNT, TOKEN) in [(a, t) for a, t in cloudflare.script_listings]
