"""/metrics: Prometheus text from the database, only with the bearer token."""
from datetime import timedelta

import pytest
from django.utils import timezone
from prometheus_client.parser import text_string_to_metric_families

from billing_console.models import CheckoutAttempt, CronRun, DriftItem, Invoice, ReconciliationRun, WebhookEvent
from billing_console.ops.heartbeat import heartbeat_record

pytestmark = pytest.mark.django_db
TOKEN = "metrics-token-0123456789abcdef"


def _samples(text: str) -> dict:
    out = {}
    for family in text_string_to_metric_families(text):
        for s in family.samples:
            out[(s.name, tuple(sorted(s.labels.items())))] = s.value
    return out


def _event(stripe_id, event_type, status, ago=timedelta(0)):
    row = WebhookEvent.objects.create(stripe_id=stripe_id, type=event_type, stripe_created=timezone.now(),
                                      payload={}, status=status)
    WebhookEvent.objects.filter(pk=row.pk).update(received_at=timezone.now() - ago)


def test_503_when_no_token_is_configured(client, settings):
    settings.METRICS_TOKEN = ""
    settings.OPS_SECRET = ""
    assert client.get("/metrics").status_code == 503


@pytest.mark.parametrize("header", [None, "Bearer wrong-token", f"Basic {TOKEN}", TOKEN])
def test_401_without_the_right_bearer_token(client, settings, header):
    settings.METRICS_TOKEN = TOKEN
    extra = {"HTTP_AUTHORIZATION": header} if header else {}
    response = client.get("/metrics", **extra)
    assert response.status_code == 401 and b"billing_" not in response.content
    assert response["WWW-Authenticate"].startswith("Bearer")


def test_ops_secret_is_the_token_when_metrics_token_is_unset(client, settings):
    settings.METRICS_TOKEN = ""
    settings.OPS_SECRET = "ops-secret-0123456789abcdef"
    assert client.get("/metrics", HTTP_AUTHORIZATION="Bearer ops-secret-0123456789abcdef").status_code == 200
    settings.METRICS_TOKEN = TOKEN  # once set, only the metrics token opens it
    assert client.get("/metrics", HTTP_AUTHORIZATION="Bearer ops-secret-0123456789abcdef").status_code == 401


def test_metrics_export_the_console_state_in_a_fixed_number_of_queries(client, settings, django_assert_max_num_queries):
    settings.METRICS_TOKEN = TOKEN
    _event("evt_1", "invoice.paid", WebhookEvent.Status.PROCESSED)
    _event("evt_2", "invoice.paid", WebhookEvent.Status.PROCESSED)
    _event("evt_3", "invoice.paid", WebhookEvent.Status.FAILED, ago=timedelta(minutes=20))
    _event("evt_4", "charge.succeeded", WebhookEvent.Status.PROCESSED)  # no receiver: ignored
    _event("evt_5", "customer.updated", WebhookEvent.Status.RECEIVED, ago=timedelta(minutes=5))
    CheckoutAttempt.objects.create(plan="pro", price_id="price_x", status=CheckoutAttempt.Status.PAID)
    CheckoutAttempt.objects.create(plan="pro", price_id="price_x", status=CheckoutAttempt.Status.ABANDONED)
    Invoice.objects.create(stripe_id="in_1", stripe_customer_id="cus_1", delivery_status=Invoice.Delivery.FAILED)
    run = ReconciliationRun.objects.create()
    DriftItem.objects.create(run=run, kind=DriftItem.Kind.SUBSCRIPTION_STATUS, stripe_id="sub_1")
    cron = CronRun.objects.create(name="reconcile", status=CronRun.Status.OK)
    CronRun.objects.filter(pk=cron.pk).update(finished_at=timezone.now() - timedelta(minutes=30))
    heartbeat_record(now=timezone.now() - timedelta(seconds=30))

    with django_assert_max_num_queries(14):
        response = client.get("/metrics", HTTP_AUTHORIZATION=f"Bearer {TOKEN}")
    assert response.status_code == 200 and response["Content-Type"].startswith("text/plain")
    s = _samples(response.content.decode())
    assert s[("billing_stripe_events_received", (("type", "invoice.paid"),))] == 3
    assert s[("billing_stripe_events", (("outcome", "processed"), ("type", "invoice.paid")))] == 2
    assert s[("billing_stripe_events", (("outcome", "failed"), ("type", "invoice.paid")))] == 1
    assert s[("billing_stripe_events", (("outcome", "ignored"), ("type", "charge.succeeded")))] == 1
    assert 20 * 60 <= s[("billing_stripe_oldest_unapplied_event_age_seconds", ())] < 21 * 60
    assert s[("billing_task_queue_depth", ())] == 0
    assert 30 * 60 <= s[("billing_cron_last_success_age_seconds", (("cron", "reconcile"),))] < 31 * 60
    assert 30 <= s[("billing_cron_last_success_age_seconds", (("cron", "heartbeat"),))] < 40
    assert s[("billing_checkout_attempts", (("status", "paid"),))] == 1
    assert s[("billing_checkout_attempts", (("status", "abandoned"),))] == 1
    assert s[("billing_invoice_deliveries", (("outcome", "failed"),))] == 1
    assert s[("billing_reconciliation_drift_open", ())] == 1
    # The apps' families are there (registered from their ready()), even when empty.
    text = response.content.decode()
    for name in ("billing_pushes", "billing_dunning_sends", "billing_license_api_requests"):
        assert f"# TYPE {name}" in text, name


def test_app_families_count_pushes_and_dunning_sends(client, settings):
    from deployments.models import PublishVersion
    from tests.deployments.factories import DeploymentFactory, PublishVersionFactory

    settings.METRICS_TOKEN = TOKEN
    deployment = DeploymentFactory()
    PublishVersionFactory(deployment=deployment, number=1, status=PublishVersion.Status.LIVE)
    PublishVersionFactory(deployment=deployment, number=2, status=PublishVersion.Status.FAILED)
    s = _samples(client.get("/metrics", HTTP_AUTHORIZATION=f"Bearer {TOKEN}").content.decode())
    assert s[("billing_pushes", (("outcome", "live"),))] == 1
    assert s[("billing_pushes", (("outcome", "failed"),))] == 1


def test_licence_api_answers_are_counted_in_redis(client, settings):
    import redis

    url = "redis://127.0.0.1:6379/11"
    try:
        redis.Redis.from_url(url).flushdb()
    except redis.ConnectionError:
        pytest.skip("needs the local Redis")
    settings.CACHES = {"default": {"BACKEND": "django.core.cache.backends.redis.RedisCache", "LOCATION": url}}
    settings.METRICS_TOKEN = TOKEN
    from django.core.cache import caches
    caches._settings = caches.settings = settings.CACHES
    try:
        del caches._connections.default
    except AttributeError:
        pass
    from licensing.metrics import license_request_counts_flush

    license_request_counts_flush()  # answers tallied by earlier tests of this process
    redis.Redis.from_url(url).flushdb()
    for _ in range(2):
        client.post("/api/license/status", data="{}", content_type="application/json")
    client.get("/api/license/status")
    s = _samples(client.get("/metrics", HTTP_AUTHORIZATION=f"Bearer {TOKEN}").content.decode())
    counted = {labels[0][1]: v for (name, labels), v in s.items() if name == "billing_license_api_requests_total"}
    assert counted["405"] == 2 and sum(counted.values()) == 3
    redis.Redis.from_url(url).flushdb()


def test_licence_api_answers_reach_redis_once_a_second_not_once_a_call(client, settings, monkeypatch):
    """The tally is sent by the first answer after FLUSH_SECONDS, in one write: no Redis write per call."""
    import redis

    from licensing import metrics

    url = "redis://127.0.0.1:6379/11"
    try:
        server = redis.Redis.from_url(url)
        server.flushdb()
    except redis.ConnectionError:
        pytest.skip("needs the local Redis")
    settings.CACHES = {"default": {"BACKEND": "django.core.cache.backends.redis.RedisCache", "LOCATION": url}}
    from django.core.cache import caches
    caches._settings = caches.settings = settings.CACHES
    try:
        del caches._connections.default
    except AttributeError:
        pass
    metrics.license_request_counts_flush()
    server.flushdb()
    key = caches["default"].make_and_validate_key(metrics.KEY.format(status=405))
    monkeypatch.setattr(metrics, "FLUSH_SECONDS", 3600.0)
    for _ in range(5):
        assert client.post("/api/license/status").status_code == 405
    assert server.get(key) is None  # tallied in the process, not written per call
    monkeypatch.setattr(metrics, "FLUSH_SECONDS", 0.0)
    client.post("/api/license/status")  # the first answer after the interval sends the whole tally
    assert int(server.get(key)) == 6
    server.flushdb()
