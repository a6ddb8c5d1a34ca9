"""One deployment per subscription (PLANS[plan]["deployments"], default 1): the service refuses the extra one
under a customer row lock, the database refuses a second row in the same slot, support replaces or deletes."""
import threading

import pytest
from billing_console.errors import ServiceError
from django.db import IntegrityError, transaction

from billing_console.models import AuditEvent
from deployments.models import Deployment
from deployments.services import deployment_create, deployment_delete, deployment_replace_account
from tests.core.factories import SubscribedCustomerFactory
from tests.deployments.factories import DeploymentFactory
from tests.markers import requires_postgres

pytestmark = pytest.mark.django_db
TOKEN = "goodToken_" + "A" * 30
OTHER_TOKEN = "otherToken_" + "B" * 30
ACCOUNT, OTHER = "a" * 32, "b" * 32


def create(customer, account_id=ACCOUNT, script_name="helm", api_token=TOKEN):
    return deployment_create(customer=customer, account_id=account_id, script_name=script_name, api_token=api_token,
                             actor_type="customer", actor=customer.email)


def test_a_second_deployment_is_refused_with_a_clear_message(cloudflare):
    cloudflare.add_token(TOKEN, ACCOUNT)
    cloudflare.add_token(OTHER_TOKEN, OTHER)
    customer = SubscribedCustomerFactory()
    create(customer)
    with pytest.raises(ServiceError) as info:
        create(customer, account_id=OTHER, script_name="helm-two", api_token=OTHER_TOKEN)
    assert "includes 1 managed deployment" in info.value.fields["customer"]
    assert Deployment.objects.filter(customer=customer).count() == 1


def test_the_plan_setting_allows_more(cloudflare, settings):
    settings.PLANS = {**settings.PLANS, "pro": {**settings.PLANS["pro"], "deployments": 2}}
    cloudflare.add_token(TOKEN, ACCOUNT)
    customer = SubscribedCustomerFactory(plan="pro")
    assert create(customer).slot == 1
    assert create(customer, script_name="helm-two").slot == 2
    with pytest.raises(ServiceError, match="includes 2 managed deployments"):
        create(customer, script_name="helm-three")


def test_the_database_refuses_a_second_row_in_the_same_slot():
    first = DeploymentFactory()
    with pytest.raises(IntegrityError), transaction.atomic():
        Deployment.objects.create(customer=first.customer, account_id=OTHER, script_name="x", slot=1)


@requires_postgres
@pytest.mark.django_db(transaction=True)
def test_two_concurrent_creates_make_one_deployment(cloudflare):
    from django.db import connection

    cloudflare.add_token(TOKEN, ACCOUNT)
    cloudflare.set_latency(0.05)
    customer = SubscribedCustomerFactory()
    barrier, outcomes = threading.Barrier(3), []

    def run(n):
        try:
            barrier.wait()
            create(customer, script_name=f"helm-{n}")
            outcomes.append("created")
        except ServiceError as exc:
            outcomes.append(exc.message)
        finally:
            connection.close()

    threads = [threading.Thread(target=run, args=(n,)) for n in range(3)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(30)
    assert outcomes.count("created") == 1 and len(outcomes) == 3
    assert Deployment.objects.filter(customer=customer).count() == 1


def test_support_replaces_a_mistyped_account_id(cloudflare):
    cloudflare.add_token(TOKEN, ACCOUNT)
    cloudflare.add_token(OTHER_TOKEN, OTHER)
    deployment = DeploymentFactory(account_id=ACCOUNT, current_version="v1.0.0", last_error_code="token_scope")
    d = deployment_replace_account(deployment=deployment, account_id=OTHER.upper(), api_token=OTHER_TOKEN,
                                   actor_type="admin", actor="sam", reason="customer typed the wrong id")
    d.refresh_from_db()
    assert (d.account_id, d.api_token, d.current_version, d.last_error_code) == (OTHER, OTHER_TOKEN, "", "")
    event = AuditEvent.objects.get(action="deployment.account_replaced")
    assert event.data["old"]["account_id"] == ACCOUNT and event.data["new"]["account_id"] == OTHER
    assert event.actor == "sam" and OTHER_TOKEN not in str(event.data)


@pytest.mark.parametrize("account_id, token, field", [
    ("not-hex", OTHER_TOKEN, "account_id"),
    (ACCOUNT, OTHER_TOKEN, "account_id"),  # the same account
    (OTHER, "short", "api_token"),
    (OTHER, None, "api_token"),
])
def test_replace_rejects_bad_input_and_changes_nothing(cloudflare, account_id, token, field):
    cloudflare.add_token(TOKEN, ACCOUNT)
    deployment = DeploymentFactory(account_id=ACCOUNT)
    with pytest.raises(ServiceError) as info:
        deployment_replace_account(deployment=deployment, account_id=account_id, api_token=token,
                                   actor_type="admin", actor="sam")
    assert field in info.value.fields
    deployment.refresh_from_db()
    assert deployment.account_id == ACCOUNT
    assert not AuditEvent.objects.filter(action="deployment.account_replaced").exists()


def test_replace_with_a_token_cloudflare_rejects_changes_nothing(cloudflare):
    cloudflare.add_token(OTHER_TOKEN, OTHER, status="revoked")
    deployment = DeploymentFactory(account_id=ACCOUNT)
    with pytest.raises(ServiceError):
        deployment_replace_account(deployment=deployment, account_id=OTHER, api_token=OTHER_TOKEN,
                                   actor_type="admin", actor="sam")
    deployment.refresh_from_db()
    assert deployment.account_id == ACCOUNT


def test_support_deletes_a_deployment_and_the_customer_can_connect_again(cloudflare):
    cloudflare.add_token(TOKEN, ACCOUNT)
    customer = SubscribedCustomerFactory()
    deployment = create(customer)
    with pytest.raises(ServiceError):
        deployment_delete(deployment=deployment, actor_type="admin", actor="sam", reason="  ")
    assert Deployment.objects.filter(pk=deployment.pk).exists()
    deployment_delete(deployment=deployment, actor_type="admin", actor="sam", reason="wrong account")
    assert not Deployment.objects.filter(customer=customer).exists()
    event = AuditEvent.objects.get(action="deployment.deleted")
    assert event.data["account_id"] == ACCOUNT and event.data["reason"] == "wrong account"
    assert create(customer).slot == 1
