import hashlib
from datetime import timedelta

import pytest
from django.core.management import call_command
from django.utils import timezone

from billing_console.models import CronRun, Customer
from deployments import tasks
from deployments.models import BundleRelease, Deployment, ErrorCode, PublishVersion
from deployments.push import deployments_push
from sandbox._faults import DROP
from tests.deployments.conftest import BUNDLE_V1, BUNDLE_V2

pytestmark = pytest.mark.django_db
PV = PublishVersion


def test_happy_push_uploads_the_verified_bundle_and_goes_live(cloudflare, bundles, make_deployment):
    deployment = make_deployment()
    counts = tasks.push_deployments()

    assert counts["pushed"] == 1 and counts["failed"] == 0
    [upload] = cloudflare.uploads_for(deployment.account_id, deployment.script_name)
    assert upload.sha256 == hashlib.sha256(BUNDLE_V1).hexdigest()
    assert upload.main_module == "worker.mjs" and upload.compatibility_date
    deployment.refresh_from_db()
    assert deployment.current_version == "v1.0.0" and deployment.status == Deployment.Status.ACTIVE
    assert deployment.last_push_at and deployment.consecutive_failures == 0
    publish = deployment.publishes.get()
    assert (publish.number, publish.status, publish.trigger) == (1, PV.Status.LIVE, PV.Trigger.CRON)
    assert publish.started_at <= publish.completed_at
    run = CronRun.objects.get(name="push_deployments")
    assert run.status == CronRun.Status.OK and run.counts["pushed"] == 1 and run.counts["latest"] == "v1.0.0"
    assert BundleRelease.objects.get().version == "v1.0.0"


def test_cloudflare_never_sees_more_uploads_at_once_than_the_concurrency(cloudflare, bundles, make_deployment):
    deployments = [make_deployment() for _ in range(24)]
    cloudflare.set_latency(0.03)
    counts = deployments_push(concurrency=3).counts
    assert counts["pushed"] == 24 and len(cloudflare.uploads) == 24
    assert cloudflare.max_in_flight == 3  # the pool's queue holds the rest; at most 3 requests at once
    assert Deployment.objects.filter(pk__in=[d.pk for d in deployments], current_version="v1.0.0").count() == 24


def test_a_deployment_on_the_wanted_version_is_not_pushed_again(cloudflare, bundles, make_deployment):
    make_deployment()
    tasks.push_deployments()
    counts = tasks.push_deployments()
    assert counts["due"] == 0 and len(cloudflare.uploads) == 1


def test_a_new_release_supersedes_the_live_publish(cloudflare, bundles, make_deployment):
    deployment = make_deployment()
    tasks.push_deployments()
    bundles.publish("v2.0.0", BUNDLE_V2)
    tasks.push_deployments()
    statuses = dict(deployment.publishes.values_list("number", "status"))
    assert statuses == {1: PV.Status.SUPERSEDED, 2: PV.Status.LIVE}
    deployment.refresh_from_db()
    assert deployment.current_version == "v2.0.0"
    assert cloudflare.uploads[-1].sha256 == hashlib.sha256(BUNDLE_V2).hexdigest()


@pytest.mark.parametrize("setup, code", [
    (lambda cf, d: cf.set_token_status(d.api_token, "revoked"), ErrorCode.TOKEN_INVALID),
    (lambda cf, d: cf.add_token(d.api_token, d.account_id, scopes=()), ErrorCode.TOKEN_SCOPE),
    (lambda cf, d: cf.suspend_account(d.account_id), ErrorCode.ACCOUNT_SUSPENDED),
    (lambda cf, d: cf.fail_next(429, account_id=d.account_id, retry_after=3600), ErrorCode.RATE_LIMITED),
    (lambda cf, d: cf.fail_next(500, account_id=d.account_id), ErrorCode.UPSTREAM_ERROR),
    (lambda cf, d: cf.fail_next(502, account_id=d.account_id), ErrorCode.UPSTREAM_ERROR),
    (lambda cf, d: cf.fail_next(DROP, account_id=d.account_id), ErrorCode.NETWORK),
])
def test_each_failure_marks_the_deployment_errored_with_its_code_and_the_others_still_push(
        cloudflare, bundles, make_deployment, setup, code):
    broken, fine = make_deployment(), make_deployment()
    setup(cloudflare, broken)
    counts = tasks.push_deployments()

    assert counts["pushed"] == 1 and counts["failed"] == 1 and counts[f"failed_{code}"] == 1
    broken.refresh_from_db()
    assert broken.status == Deployment.Status.ERRORED and broken.last_error_code == code
    assert broken.last_error_message and broken.consecutive_failures == 1 and broken.current_version == ""
    publish = broken.publishes.get()
    assert publish.status == PV.Status.FAILED and publish.error_code == code and publish.completed_at
    fine.refresh_from_db()
    assert fine.current_version == "v1.0.0"
    assert CronRun.objects.get(name="push_deployments").status == CronRun.Status.ERRORS


def test_a_short_retry_after_is_waited_out_within_the_run(cloudflare, bundles, make_deployment):
    deployment = make_deployment()
    cloudflare.fail_next(429, account_id=deployment.account_id, retry_after=1)
    counts = tasks.push_deployments()
    assert counts["pushed"] == 1
    deployment.refresh_from_db()
    assert deployment.current_version == "v1.0.0" and deployment.last_error_code == ""


def test_a_long_retry_after_is_honoured_by_later_runs(cloudflare, bundles, make_deployment):
    deployment = make_deployment()
    cloudflare.fail_next(429, account_id=deployment.account_id, retry_after=600)
    tasks.push_deployments()
    deployment.refresh_from_db()
    assert deployment.next_attempt_at > timezone.now() + timedelta(seconds=590)
    assert tasks.push_deployments()["due"] == 0  # still inside Retry-After
    Deployment.objects.filter(pk=deployment.pk).update(next_attempt_at=timezone.now() - timedelta(seconds=1))
    assert tasks.push_deployments()["pushed"] == 1


def test_a_bundle_failing_its_checksum_is_never_pushed_and_the_run_says_why(cloudflare, bundles, make_deployment):
    deployment = make_deployment()
    bundles.corrupt("v1.0.0")
    counts = tasks.push_deployments()

    assert cloudflare.uploads == []
    assert counts["pushed"] == 0 and counts["skipped_bundle"] == 1 and counts["errors"] == 1
    run = CronRun.objects.get(name="push_deployments")
    assert run.status == CronRun.Status.ERRORS and "checksum" in run.error_summary and "v1.0.0" in run.error_summary
    assert not PublishVersion.objects.exists()
    deployment.refresh_from_db()
    assert deployment.current_version == ""


def test_pinning_the_manifest_url_to_an_older_release_rolls_everyone_back(settings, cloudflare, bundles, make_deployment):
    first, second = make_deployment(), make_deployment()
    tasks.push_deployments()
    bundles.publish("v2.0.0", BUNDLE_V2)
    tasks.push_deployments()
    settings.HELM_BUNDLE_MANIFEST_URL = bundles.manifest_url("v1.0.0")
    counts = tasks.push_deployments()

    assert counts["pushed"] == 2 and counts["latest"] == "v1.0.0"
    for deployment in (first, second):
        deployment.refresh_from_db()
        assert deployment.current_version == "v1.0.0"
    assert cloudflare.uploads[-1].sha256 == hashlib.sha256(BUNDLE_V1).hexdigest()


def test_a_pinned_deployment_stays_on_its_version_while_others_follow_the_latest(cloudflare, bundles, make_deployment):
    pinned, follower = make_deployment(), make_deployment()
    tasks.push_deployments()
    Deployment.objects.filter(pk=pinned.pk).update(pinned_version="v1.0.0")
    bundles.publish("v2.0.0", BUNDLE_V2)
    tasks.push_deployments()
    pinned.refresh_from_db()
    follower.refresh_from_db()
    assert (pinned.current_version, follower.current_version) == ("v1.0.0", "v2.0.0")


def test_file_manifest_urls_work(settings, cloudflare, bundles, make_deployment):
    deployment = make_deployment()
    settings.HELM_BUNDLE_MANIFEST_URL = bundles.manifest_file_url()
    assert tasks.push_deployments()["pushed"] == 1
    deployment.refresh_from_db()
    assert deployment.current_version == "v1.0.0"


def test_a_missing_manifest_fails_the_run_with_its_reason(settings, cloudflare, bundles, make_deployment):
    make_deployment()
    bundles.unpublish_latest()
    counts = tasks.push_deployments()
    run = CronRun.objects.get(name="push_deployments")
    assert counts["due"] == 0 and run.status == CronRun.Status.ERRORS and "404" in run.error_summary


def test_not_entitled_and_paused_deployments_are_not_pushed(cloudflare, bundles, make_deployment):
    lapsed = make_deployment()
    Customer.objects.filter(pk=lapsed.customer_id).update(current_period_end=timezone.now() - timedelta(days=30))
    paused = make_deployment(paused=True, paused_by=Deployment.PausedBy.MANUAL, status=Deployment.Status.PAUSED)
    counts = tasks.push_deployments()
    assert counts["due"] == 0 and cloudflare.uploads == []
    assert not PublishVersion.objects.filter(deployment__in=[lapsed, paused]).exists()


def test_three_auth_failures_stop_the_deployment_until_the_token_is_rotated(settings, cloudflare, bundles, make_deployment):
    settings.DEPLOY_MAX_AUTH_FAILURES = 3
    deployment = make_deployment(token_status="expired")
    for _ in range(3):
        tasks.push_deployments()
    deployment.refresh_from_db()
    assert deployment.consecutive_auth_failures == 3 and deployment.paused
    assert deployment.paused_by == Deployment.PausedBy.AUTH_FAILURES
    assert deployment.status == Deployment.Status.ERRORED  # it needs a person, so it counts as errored
    assert tasks.push_deployments()["due"] == 0
    assert deployment.publishes.count() == 3
    assert deployment.customer.audit_events.filter(action="deployment.stopped_auth_failures").count() == 1


def test_a_publish_left_unfinished_by_a_crash_is_failed_and_pushed_again(settings, cloudflare, bundles, make_deployment):
    deployment = make_deployment()
    stale = PublishVersion.objects.create(deployment=deployment, number=1, version="v1.0.0", status=PV.Status.DEPLOYING)
    PublishVersion.objects.filter(pk=stale.pk).update(created_at=timezone.now() - timedelta(hours=2))
    Deployment.objects.filter(pk=deployment.pk).update(publish_seq=1)
    counts = tasks.push_deployments()
    stale.refresh_from_db()
    assert stale.status == PV.Status.FAILED and stale.error_code == ErrorCode.INTERRUPTED
    assert counts["interrupted"] == 1 and counts["pushed"] == 1
    assert deployment.publishes.get(number=2).status == PV.Status.LIVE


def test_an_unfinished_publish_blocks_a_second_claim(cloudflare, bundles, make_deployment):
    deployment = make_deployment()
    PublishVersion.objects.create(deployment=deployment, number=1, version="v1.0.0", status=PV.Status.DEPLOYING)
    counts = deployments_push()
    assert counts.counts["skipped_claimed"] == 1 and cloudflare.uploads == []


def test_dry_run_reports_and_writes_nothing(cloudflare, bundles, make_deployment, capsys):
    deployment = make_deployment()
    call_command("push_deployments", "--dry-run")
    out = capsys.readouterr().out
    assert f"would push {deployment.pk}: (none) -> v1.0.0" in out
    assert not PublishVersion.objects.exists() and not BundleRelease.objects.exists()
    assert not CronRun.objects.exists() and cloudflare.uploads == []


def test_command_pushes_one_deployment(cloudflare, bundles, make_deployment, capsys):
    chosen, other = make_deployment(), make_deployment()
    call_command("push_deployments", "--deployment", str(chosen.pk))
    assert "pushed 1, failed 0" in capsys.readouterr().out
    assert [u.script_name for u in cloudflare.uploads] == [chosen.script_name]


def test_command_rejects_a_malformed_deployment_id(db):
    from django.core.management.base import CommandError

    with pytest.raises(CommandError, match="not a deployment id"):
        call_command("push_deployments", "--deployment", "nope")


def test_a_token_that_does_not_decrypt_for_its_row_fails_as_unreadable(cloudflare, bundles, make_deployment):
    donor, victim = make_deployment(), make_deployment()
    # A ciphertext copied from another row is bound to that row's id: it must not decrypt here.
    Deployment.objects.filter(pk=victim.pk).update(api_token_encrypted=donor.api_token_encrypted)
    counts = tasks.push_deployments()
    assert counts["pushed"] == 1 and counts["failed_token_unreadable"] == 1
    victim.refresh_from_db()
    assert victim.last_error_code == ErrorCode.TOKEN_UNREADABLE
    assert [u.script_name for u in cloudflare.uploads] == [donor.script_name]
