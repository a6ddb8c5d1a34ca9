"""`GET /metrics`: Prometheus text, computed from the database at scrape time (several gunicorn workers and
qclusters share no memory, so in-process counters would each see a slice). A fixed number of aggregate
queries per scrape, whatever the data size; bearer METRICS_TOKEN (or OPS_SECRET when it is unset).

Apps add their families without the core importing them, from their AppConfig.ready():

    from billing_console.ops.metrics import register_metrics
    register_metrics(push_metrics)   # fn() -> iterable of prometheus_client metric families

Totals of rows the console keeps are exported as gauges (`*_total` names are counters in Prometheus:
they must never go down, and a pruned table would).
"""
from __future__ import annotations

import hmac
import logging
from typing import Callable, Iterable

from django.conf import settings
from django.db.models import Count, Max, Min
from django.http import HttpResponse, JsonResponse
from django.utils import timezone
from django.views.decorators.cache import never_cache
from django.views.decorators.http import require_GET
from prometheus_client.core import CollectorRegistry, GaugeMetricFamily
from prometheus_client.exposition import CONTENT_TYPE_LATEST, generate_latest

from billing_console.errors import error_body
from billing_console.models import CheckoutAttempt, CronRun, DriftItem, Heartbeat, Invoice, WebhookEvent

log = logging.getLogger("billing_console.ops")

MetricsFn = Callable[[], Iterable]
_providers: list[MetricsFn] = []


def register_metrics(fn: MetricsFn) -> MetricsFn:
    if fn not in _providers:
        _providers.append(fn)
    return fn


def gauge(name: str, doc: str, labels: list[str], rows: Iterable[tuple]) -> GaugeMetricFamily:
    """A family from (label values..., value) rows."""
    family = GaugeMetricFamily(name, doc, labels=labels)
    for *values, value in rows:
        family.add_metric([str(v) for v in values], float(value))
    return family


def _age(at, now) -> float:
    return max((now - at).total_seconds(), 0.0) if at else float("nan")


def stripe_event_metrics(now) -> list:
    """One GROUP BY over the inbox: received (every stored event), processed by a receiver, ignored
    (processed, but no receiver handles the type), failed and waiting, per type."""
    from billing_console.stripe import dispatch

    handled = set((getattr(dispatch, "handled_event_types", None) or dispatch.handled_types)())
    rows = WebhookEvent.objects.values_list("type", "status").annotate(n=Count("pk")).order_by()
    received, outcome = {}, {}
    for event_type, status, n in rows:
        received[event_type] = received.get(event_type, 0) + n
        if status == WebhookEvent.Status.PROCESSED:
            status = "processed" if event_type in handled else "ignored"
        key = (event_type, status)
        outcome[key] = outcome.get(key, 0) + n
    oldest = WebhookEvent.objects.filter(status__in=[WebhookEvent.Status.RECEIVED, WebhookEvent.Status.PROCESSING,
                                                     WebhookEvent.Status.FAILED]).aggregate(min_at=Min("received_at"))
    return [
        gauge("billing_stripe_events_received", "Stripe events stored, by type.", ["type"], sorted(received.items())),
        gauge("billing_stripe_events", "Stored Stripe events by type and outcome "
              "(processed, ignored = no receiver, failed, received = waiting, processing).",
              ["type", "outcome"], sorted((t, s, n) for (t, s), n in outcome.items())),
        gauge("billing_stripe_oldest_unapplied_event_age_seconds",
              "Age of the oldest event not applied yet (waiting, processing or failed); 0 when none.", [],
              [(_age(oldest["min_at"], now) if oldest["min_at"] else 0.0,)]),
    ]


def queue_metrics() -> list:
    """Tasks waiting in django-q2's broker (the ORM table or the Redis list)."""
    from django_q.brokers import get_broker

    try:
        depth = float(get_broker().queue_size())
    except Exception as exc:  # the broker being down is a finding, not a failed scrape
        log.warning("task queue size unavailable: %s", type(exc).__name__)
        depth = float("nan")
    return [gauge("billing_task_queue_depth", "Tasks waiting in the django-q2 broker (NaN: broker unreachable).",
                  [], [(depth,)])]


def cron_metrics(now) -> list:
    from billing_console.ops.heartbeat import CLUSTER
    from billing_console.ops.schedules import SCHEDULES

    last_ok = dict(CronRun.objects.filter(status=CronRun.Status.OK).values("name")
                   .annotate(at=Max("finished_at")).values_list("name", "at").order_by())
    beat = Heartbeat.objects.filter(name=CLUSTER).values_list("at", flat=True).first()
    rows = []
    for cron in SCHEDULES:
        at = beat if cron.name == "heartbeat" else last_ok.get(cron.name)
        rows.append((cron.name, _age(at, now)))
    return [gauge("billing_cron_last_success_age_seconds",
                  "Seconds since each cron last finished OK (NaN: never).", ["cron"], rows)]


def core_metrics() -> list:
    now = timezone.now()
    checkout = CheckoutAttempt.objects.values_list("status").annotate(n=Count("pk")).order_by()
    follow_up = CheckoutAttempt.objects.values_list("follow_up_status").annotate(n=Count("pk")).order_by()
    deliveries = Invoice.objects.values_list("delivery_status").annotate(n=Count("pk")).order_by()
    drift = DriftItem.objects.filter(resolution=DriftItem.Resolution.OPEN).count()
    return [
        *stripe_event_metrics(now),
        *queue_metrics(),
        *cron_metrics(now),
        gauge("billing_checkout_attempts", "Checkout attempts by status (the funnel: pending, paid, abandoned).",
              ["status"], sorted(checkout)),
        gauge("billing_checkout_follow_ups", "Abandoned-checkout follow-up emails by outcome.", ["outcome"],
              sorted(follow_up)),
        gauge("billing_invoice_deliveries", "Invoices by delivery outcome (pending, rendered, sent, failed).",
              ["outcome"], sorted(deliveries)),
        gauge("billing_reconciliation_drift_open", "Reconciliation drift items not resolved.", [], [(drift,)]),
    ]


class _Collector:
    def collect(self):
        yield from core_metrics()
        for fn in _providers:
            try:
                yield from fn()
            except Exception:  # one app's broken family must not take the scrape down
                log.exception("metrics provider %s failed", getattr(fn, "__qualname__", fn))


def metrics_text() -> bytes:
    registry = CollectorRegistry(auto_describe=False)
    registry.register(_Collector())
    return generate_latest(registry)


def _token() -> str:
    return settings.METRICS_TOKEN or settings.OPS_SECRET


@never_cache
@require_GET
def metrics_view(request):
    token = _token()
    if not token:
        return JsonResponse(error_body("not_configured", "Metrics are disabled: set METRICS_TOKEN (or OPS_SECRET)."), status=503)
    scheme, _, given = request.headers.get("Authorization", "").partition(" ")
    if scheme.lower() != "bearer" or not hmac.compare_digest(given.strip().encode(), token.encode()):
        response = JsonResponse(error_body("unauthorized", "Missing or wrong bearer token."), status=401)
        response["WWW-Authenticate"] = 'Bearer realm="metrics"'
        return response
    return HttpResponse(metrics_text(), content_type=CONTENT_TYPE_LATEST)
