"""Real HTTP stand-ins on port 0: the fake Cloudflare API and a bundle host serving manifests."""
import pytest

from sandbox.bundles import BundleHost
from sandbox.cloudflare import FakeCloudflare
from tests.deployments.factories import DeploymentFactory

BUNDLE_V1 = b"export default { async fetch() { return new Response('helm v1'); } };\n"
BUNDLE_V2 = b"export default { async fetch() { return new Response('helm v2'); } };\n"


@pytest.fixture(autouse=True)
def _tasks_run_inline(monkeypatch):
    """django-q2 reads Q_CLUSTER once at import, so the root conftest's sync=True does not reach async_task."""
    from django_q.conf import Conf

    monkeypatch.setattr(Conf, "SYNC", True)


@pytest.fixture
def cloudflare(settings):
    fake = FakeCloudflare().start()
    settings.CLOUDFLARE_API_BASE = f"{fake.url}/client/v4"
    settings.CLOUDFLARE_TIMEOUT_SECONDS = 5.0
    yield fake
    fake.stop()


@pytest.fixture
def bundles(settings, tmp_path):
    host = BundleHost(tmp_path / "bundles").start()
    host.publish("v1.0.0", BUNDLE_V1)
    settings.HELM_BUNDLE_MANIFEST_URL = host.manifest_url()
    settings.DEPLOY_ALLOW_HTTP_BUNDLES = True  # the stand-in serves plain http on loopback
    yield host
    host.stop()


@pytest.fixture
def make_deployment(cloudflare):
    """A deployment whose token the fake Cloudflare accepts (pass token_status/scopes to change that)."""

    def make(token_status="active", scopes=None, **kwargs):
        deployment = DeploymentFactory(**kwargs)
        extra = {} if scopes is None else {"scopes": scopes}
        cloudflare.add_token(deployment.api_token, deployment.account_id, status=token_status, **extra)
        return deployment

    return make
