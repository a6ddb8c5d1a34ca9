import json
from unittest import mock

import pytest
from django.db.utils import OperationalError

from billing_console.ops import health

SECRETS = {
    "STRIPE_SECRET_KEY": "sk_test_" + "S3cr3tStripeKey" * 2,
    "STRIPE_WEBHOOK_SECRET": "whsec_" + "W3bh00kSecret" * 2,
    "CLOUD_MASTER_KEY": "m4ster-key-never-shown-0123456789",
    "LICENSE_SIGNING_KEY": "s1gning-key-never-shown-abcdef",
    "OPS_SECRET": "0ps-secret-never-shown-xyz123",
    "HELM_BUNDLE_MANIFEST_URL": "https://bundles.example.com/manifest.json?token=m4nifest-t0ken",
}


@pytest.fixture
def configured(settings):
    for name, value in SECRETS.items():
        setattr(settings, name, value)
    settings.PLANS = {**settings.PLANS, "pro": {**settings.PLANS["pro"], "price_id": "price_123"}}
    return settings


def test_health_reports_presence_flags_and_db(client, db, configured):
    response = client.get("/health")
    assert response.status_code == 200
    body = response.json()
    assert body["ok"] is True and body["db"] is True
    config = body["config"]
    for flag in ("hasStripeKey", "hasWebhookSecret", "hasStripePrice", "hasCloudMasterKey", "hasManifestUrl",
                 "hasLicenseSigningKey", "hasOpsSecret"):
        assert config[flag] is True, flag
    assert config["hasEmail"] is False  # locmem in tests is not a real email setup
    assert all(isinstance(v, bool) for v in config.values())


def test_health_flags_are_false_when_unconfigured(client, db):
    config = client.get("/health").json()["config"]
    assert config["hasStripeKey"] is False and config["hasCloudMasterKey"] is True  # tests set a master key
    assert config["hasOpsSecret"] is False and config["hasManifestUrl"] is False


@pytest.mark.parametrize("path", ["/health", "/api/cloud/health"])
def test_no_configured_secret_appears_in_health_answers(client, db, configured, path):
    text = client.get(path).content.decode()
    for name, value in SECRETS.items():
        assert value not in text, name
        assert value[:12] not in text, name  # not even a prefix


@pytest.mark.parametrize("path", ["/health", "/api/cloud/health"])
def test_health_answers_503_when_the_database_is_down(client, db, path):
    with mock.patch("django.db.backends.base.base.BaseDatabaseWrapper.ensure_connection",
                    side_effect=OperationalError("connection refused")):
        response = client.get(path)
    assert response.status_code == 503
    body = json.loads(response.content)
    assert body["ok"] is False


def test_cloud_health_shape_and_readiness(client, db, configured):
    body = client.get("/api/cloud/health").json()
    assert body["ready"] is True
    assert set(body["deployments"]) == {"total", "active", "paused", "errored"}
    assert set(body["cron"]) >= {"lastRunAt", "lastRunStatus", "recent"}


def test_cloud_health_not_ready_without_master_key(client, db, configured):
    configured.CLOUD_MASTER_KEY = ""
    body = client.get("/api/cloud/health").json()
    assert body["ready"] is False and body["config"]["hasCloudMasterKey"] is False


def test_registered_provider_fills_sections(client, db, configured):
    def provider():
        return {"deployments": {"total": 3, "active": 2}}

    health.register_cloud_health(provider)
    try:
        body = client.get("/api/cloud/health").json()
    finally:
        health.unregister_cloud_health(provider)
    assert body["deployments"] == {"total": 3, "active": 2, "paused": 0, "errored": 0}


def test_health_rejects_post(client, db):
    assert client.post("/health").status_code == 405
