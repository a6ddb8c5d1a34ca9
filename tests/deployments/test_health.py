import logging

import pytest

from billing_console.models import CronRun
from deployments import tasks
from deployments.models import Deployment

pytestmark = pytest.mark.django_db


def test_cloud_health_reports_real_counts_and_the_last_push_run(client, cloudflare, bundles, make_deployment):
    ok = make_deployment()
    broken = make_deployment(token_status="revoked")
    make_deployment(paused=True, paused_by="manual", status=Deployment.Status.PAUSED)
    tasks.push_deployments()

    body = client.get("/api/cloud/health").json()
    assert body["deployments"] == {"total": 3, "active": 1, "paused": 1, "errored": 1}
    run = CronRun.objects.get(name="push_deployments")
    assert body["cron"]["lastRunStatus"] == "errors"
    assert body["cron"]["lastRunAt"].startswith(run.started_at.strftime("%Y-%m-%dT%H:%M"))
    recent = body["cron"]["recent"]
    assert {r["type"] for r in recent} == {"push-ok", "push-failure"}
    failure = next(r for r in recent if r["type"] == "push-failure")
    assert failure["errorCode"] == "token_invalid" and failure["deployment"] == str(broken.pk)[:8]
    text = client.get("/api/cloud/health").content.decode()
    for deployment in (ok, broken):
        assert deployment.api_token not in text and deployment.customer.email not in text
        assert deployment.account_id not in text


def test_recent_lists_at_most_five_events(client, cloudflare, bundles, make_deployment):
    for _ in range(7):
        make_deployment()
    tasks.push_deployments()
    assert len(client.get("/api/cloud/health").json()["cron"]["recent"]) == 5


def test_no_token_reaches_a_log_line(caplog, cloudflare, bundles, make_deployment):
    caplog.set_level(logging.DEBUG)
    deployments = [make_deployment(token_status=s) for s in ("active", "revoked")]
    deployments.append(make_deployment(scopes=()))
    cloudflare.fail_next(500, account_id=deployments[0].account_id)
    tasks.push_deployments()
    tasks.push_deployments()
    assert "push failed" in caplog.text
    for deployment in deployments:
        assert deployment.api_token not in caplog.text
        assert deployment.api_token_encrypted not in caplog.text


def test_ops_summary_shows_deployments_by_status_and_flags_errors(client, settings, cloudflare, bundles, make_deployment):
    settings.OPS_SECRET = "ops-secret-for-this-test-0123456789"
    make_deployment()
    make_deployment(token_status="revoked")
    tasks.push_deployments()

    body = client.get("/api/ops/summary", HTTP_AUTHORIZATION=f"Bearer {settings.OPS_SECRET}").json()
    assert body["deployments"]["byStatus"] == {"total": 2, "active": 1, "paused": 0, "errored": 1}
    assert "1 deployment errored" in body["problems"]
