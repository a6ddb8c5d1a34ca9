import pytest

from deployments import tasks
from deployments.selectors import Readiness, deploy_readiness

pytestmark = pytest.mark.django_db


def test_failed_when_the_console_is_not_configured(settings):
    settings.HELM_BUNDLE_MANIFEST_URL = ""
    readiness = deploy_readiness()
    assert readiness.state == Readiness.FAILED and "HELM_BUNDLE_MANIFEST_URL" in readiness.log[0]


def test_almost_there_without_a_published_release(settings, make_deployment):
    settings.HELM_BUNDLE_MANIFEST_URL = "https://bundles.example.com/manifest.json"
    assert deploy_readiness().state == Readiness.ALMOST
    assert deploy_readiness(make_deployment()).title == "Almost there"


def test_live_once_pushed_and_failed_with_the_deploy_log_when_the_push_failed(cloudflare, bundles, make_deployment):
    good, bad = make_deployment(), make_deployment(token_status="revoked")
    assert deploy_readiness(good).state == Readiness.ALMOST  # waiting for the first run
    tasks.push_deployments()
    good.refresh_from_db()
    bad.refresh_from_db()
    assert deploy_readiness(good).state == Readiness.LIVE and "v1.0.0" in deploy_readiness(good).message
    failed = deploy_readiness(bad)
    assert failed.state == Readiness.FAILED and "token" in failed.message.lower()
    assert failed.log and "Failed" in failed.log[0]
