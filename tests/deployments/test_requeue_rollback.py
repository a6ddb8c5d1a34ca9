import pytest

from billing_console.errors import ServiceError
from billing_console.models import AuditEvent
from deployments import tasks
from deployments.models import Deployment, ErrorCode, PublishVersion
from deployments.services import deployment_pin, deployment_push_now, deployment_rollback, publish_requeue
from tests.deployments.conftest import BUNDLE_V2

pytestmark = pytest.mark.django_db
PV = PublishVersion


@pytest.fixture
def two_releases(cloudflare, bundles, make_deployment):
    """A deployment that went live on v1.0.0, then on v2.0.0."""
    deployment = make_deployment()
    tasks.push_deployments()
    bundles.publish("v2.0.0", BUNDLE_V2)
    tasks.push_deployments()
    deployment.refresh_from_db()
    return deployment


def test_rollback_to_a_publish_number_pushes_that_version_and_pins_it(two_releases, cloudflare,
                                                                       django_capture_on_commit_callbacks):
    deployment = two_releases
    with django_capture_on_commit_callbacks(execute=True):
        publish = deployment_rollback(deployment=deployment, number=1, actor_type="admin", actor="support")
    publish.refresh_from_db()
    assert (publish.number, publish.version, publish.trigger, publish.status) == (3, "v1.0.0", PV.Trigger.ROLLBACK, PV.Status.LIVE)
    assert deployment.publishes.get(number=2).status == PV.Status.ROLLED_BACK
    deployment.refresh_from_db()
    assert deployment.current_version == "v1.0.0" and deployment.pinned_version == "v1.0.0"
    assert AuditEvent.objects.filter(action="deployment.rolled_back", actor="support").exists()
    assert tasks.push_deployments()["due"] == 0  # the pin holds against the latest release


@pytest.mark.parametrize("kwargs, message", [
    ({"number": 99}, "no publish #99"),
    ({"number": 0}, "positive"),
    ({"number": "1"}, "positive"),
    ({}, "either"),
    ({"number": 1, "version": "v1.0.0"}, "either"),
    ({"version": "v9.9.9"}, "v9.9.9"),
])
def test_rollback_rejects_bad_input(two_releases, kwargs, message):
    with pytest.raises(ServiceError, match=message):
        deployment_rollback(deployment=two_releases, actor_type="admin", actor="support", **kwargs)
    assert two_releases.publishes.count() == 2


def test_requeue_pushes_a_failed_publish_again(cloudflare, bundles, make_deployment, django_capture_on_commit_callbacks):
    deployment = make_deployment()
    cloudflare.fail_next(500, account_id=deployment.account_id)
    tasks.push_deployments()
    failed = deployment.publishes.get()
    assert failed.status == PV.Status.FAILED and failed.error_code == ErrorCode.UPSTREAM_ERROR
    with django_capture_on_commit_callbacks(execute=True):
        new = publish_requeue(publish=failed, actor_type="admin", actor="support")
    new.refresh_from_db()
    assert new.trigger == PV.Trigger.REQUEUE and new.status == PV.Status.LIVE and new.number == 2
    deployment.refresh_from_db()
    assert deployment.status == Deployment.Status.ACTIVE and deployment.last_error_code == ""


def test_requeue_refuses_a_publish_that_did_not_fail_or_is_not_the_latest(two_releases):
    live = two_releases.publishes.get(number=2)
    with pytest.raises(ServiceError, match="not failed"):
        publish_requeue(publish=live, actor_type="admin")
    PublishVersion.objects.filter(number=1, deployment=two_releases).update(status=PV.Status.FAILED)
    with pytest.raises(ServiceError, match="not the latest"):
        publish_requeue(publish=two_releases.publishes.get(number=1), actor_type="admin")


def test_push_now_refuses_a_paused_deployment_and_a_push_in_progress(two_releases):
    PublishVersion.objects.create(deployment=two_releases, number=3, version="v2.0.0", status=PV.Status.QUEUED)
    with pytest.raises(ServiceError, match="in progress"):
        deployment_push_now(deployment=two_releases, actor_type="admin")
    Deployment.objects.filter(pk=two_releases.pk).update(paused=True, paused_by="manual")
    with pytest.raises(ServiceError, match="paused"):
        deployment_push_now(deployment=two_releases, actor_type="admin")


def test_push_now_repushes_the_wanted_version(two_releases, cloudflare, django_capture_on_commit_callbacks):
    with django_capture_on_commit_callbacks(execute=True):
        publish = deployment_push_now(deployment=two_releases, actor_type="admin", actor="support")
    publish.refresh_from_db()
    assert publish.status == PV.Status.LIVE and publish.version == "v2.0.0" and len(cloudflare.uploads) == 3
    assert two_releases.publishes.get(number=2).status == PV.Status.SUPERSEDED


def test_pin_rejects_an_unknown_version_and_unpin_follows_the_latest(two_releases):
    with pytest.raises(ServiceError):
        deployment_pin(deployment=two_releases, version="v7", actor_type="admin")
    deployment_pin(deployment=two_releases, version="v1.0.0", actor_type="admin")
    assert tasks.push_deployments()["pushed"] == 1
    deployment_pin(deployment=two_releases, version="", actor_type="admin")
    assert tasks.push_deployments()["pushed"] == 1
    two_releases.refresh_from_db()
    assert two_releases.current_version == "v2.0.0"
