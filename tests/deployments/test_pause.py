import pytest

from billing_console.errors import ServiceError
from billing_console.models import AuditEvent, Customer
from billing_console.services import customer_set_access_state
from billing_console.stripe.dispatch import dispatch
from deployments import tasks
from deployments.models import Deployment
from deployments.services import deployment_pause, deployment_resume

pytestmark = pytest.mark.django_db
A = Customer.AccessState


def test_pause_and_resume_are_audited_and_idempotent(cloudflare, bundles, make_deployment):
    deployment = make_deployment()
    deployment_pause(deployment=deployment, actor_type="admin", actor="support", reason="customer asked")
    deployment = deployment_pause(deployment=deployment, actor_type="admin", actor="support")
    assert deployment.paused and deployment.status == Deployment.Status.PAUSED
    assert deployment.paused_by == Deployment.PausedBy.MANUAL and deployment.paused_reason == "customer asked"
    assert tasks.push_deployments()["due"] == 0

    deployment = deployment_resume(deployment=deployment, actor_type="admin", actor="support")
    deployment_resume(deployment=deployment, actor_type="admin", actor="support")
    assert not deployment.paused and deployment.status == Deployment.Status.ACTIVE
    assert AuditEvent.objects.filter(action="deployment.paused").count() == 1
    assert AuditEvent.objects.filter(action="deployment.resumed").count() == 1
    assert tasks.push_deployments()["pushed"] == 1


def test_pause_rejects_an_unknown_origin(make_deployment):
    with pytest.raises(ServiceError):
        deployment_pause(deployment=make_deployment(), actor_type="admin", by="gremlins")


def hard_lock(customer):
    customer_set_access_state(customer=customer, state=A.HARD_LOCKED, actor_type="system", reason="dunning")


def test_the_push_run_pauses_hard_locked_customers_and_resumes_them_when_paid(cloudflare, bundles, make_deployment):
    locked, fine = make_deployment(), make_deployment()
    hard_lock(locked.customer)  # dunning changed the state without any Stripe event
    counts = tasks.push_deployments()
    assert counts["auto_paused"] == 1 and counts["pushed"] == 1
    locked.refresh_from_db()
    assert locked.paused and locked.paused_by == Deployment.PausedBy.AUTO_LOCK and locked.current_version == ""

    customer_set_access_state(customer=locked.customer, state=A.ACTIVE, actor_type="stripe")
    counts = tasks.push_deployments()
    assert counts["auto_resumed"] == 1 and counts["pushed"] == 1
    locked.refresh_from_db()
    assert not locked.paused and locked.current_version == "v1.0.0"


def test_canceled_customers_are_paused_too(cloudflare, bundles, make_deployment):
    deployment = make_deployment()
    Customer.objects.filter(pk=deployment.customer_id).update(subscription_status="canceled")
    assert tasks.push_deployments()["auto_paused"] == 1
    deployment.refresh_from_db()
    assert deployment.paused_by == Deployment.PausedBy.AUTO_LOCK and "canceled" in deployment.paused_reason


def test_a_manual_pause_survives_payment_returning(cloudflare, bundles, make_deployment):
    deployment = make_deployment()
    deployment_pause(deployment=deployment, actor_type="customer", actor="me")
    hard_lock(deployment.customer)
    customer_set_access_state(customer=deployment.customer, state=A.ACTIVE, actor_type="stripe")
    assert tasks.push_deployments()["auto_resumed"] == 0
    deployment.refresh_from_db()
    assert deployment.paused and deployment.paused_by == Deployment.PausedBy.MANUAL


def test_manual_resume_is_refused_while_the_customer_is_locked(make_deployment):
    deployment = make_deployment()
    hard_lock(deployment.customer)
    tasks.push_deployments()
    with pytest.raises(ServiceError, match="hard locked"):
        deployment_resume(deployment=deployment, actor_type="admin", actor="support")


def test_manual_resume_is_refused_for_a_token_stop(make_deployment):
    deployment = make_deployment(paused=True, paused_by=Deployment.PausedBy.AUTH_FAILURES, consecutive_auth_failures=3)
    with pytest.raises(ServiceError, match="rotate or verify"):
        deployment_resume(deployment=deployment, actor_type="admin", actor="support")


def subscription_event(customer, status, event_type="customer.subscription.updated"):
    return {"id": "evt_1", "type": event_type,
            "data": {"object": {"id": customer.subscription_id, "object": "subscription", "status": status,
                                "customer": "cus_unknown"}}}


def test_stripe_events_pause_on_lock_and_resume_on_invoice_paid(make_deployment, django_capture_on_commit_callbacks):
    deployment = make_deployment()
    customer = deployment.customer
    hard_lock(customer)
    with django_capture_on_commit_callbacks(execute=True):
        dispatch(subscription_event(customer, "unpaid"))
    deployment.refresh_from_db()
    assert deployment.paused and deployment.paused_by == Deployment.PausedBy.AUTO_LOCK
    assert AuditEvent.objects.filter(action="deployment.paused", actor_type="stripe", actor="evt_1").exists()

    customer_set_access_state(customer=customer, state=A.ACTIVE, actor_type="stripe")
    invoice = {"id": "evt_2", "type": "invoice.paid", "data": {"object": {
        "id": "in_1", "object": "invoice", "customer": "cus_unknown",
        "parent": {"subscription_details": {"subscription": customer.subscription_id}}}}}
    with django_capture_on_commit_callbacks(execute=True):
        dispatch(invoice)
    deployment.refresh_from_db()
    assert not deployment.paused


def test_subscription_deleted_pauses(make_deployment, django_capture_on_commit_callbacks):
    deployment = make_deployment()
    Customer.objects.filter(pk=deployment.customer_id).update(subscription_status="canceled")
    with django_capture_on_commit_callbacks(execute=True):
        dispatch(subscription_event(deployment.customer, "canceled", "customer.subscription.deleted"))
    deployment.refresh_from_db()
    assert deployment.paused_by == Deployment.PausedBy.AUTO_LOCK


def test_events_for_unknown_or_malformed_objects_do_nothing(make_deployment, django_capture_on_commit_callbacks):
    deployment = make_deployment()
    with django_capture_on_commit_callbacks(execute=True) as callbacks:
        dispatch({"id": "evt_x", "type": "invoice.paid", "data": {"object": {"customer": {"id": 5}}}})
        dispatch({"id": "evt_y", "type": "customer.subscription.updated", "data": {}})
    assert callbacks == []
    deployment.refresh_from_db()
    assert not deployment.paused


def test_the_migration_gives_the_customers_earlier_pauses_their_own_origin(make_deployment):
    import importlib

    from django.apps import apps

    from billing_console.services import audit_log

    migration = importlib.import_module("deployments.migrations.0003_paused_by_customer")
    by_customer, by_support = make_deployment(), make_deployment()
    for d, actor_type in ((by_customer, "customer"), (by_support, "admin")):
        Deployment.objects.filter(pk=d.pk).update(paused=True, paused_by="manual")
        audit_log(actor_type=actor_type, actor="x", action="deployment.paused", target=d, customer=d.customer)
    migration.split_manual_pauses(apps, None)
    assert Deployment.objects.get(pk=by_customer.pk).paused_by == Deployment.PausedBy.CUSTOMER
    assert Deployment.objects.get(pk=by_support.pk).paused_by == Deployment.PausedBy.MANUAL
