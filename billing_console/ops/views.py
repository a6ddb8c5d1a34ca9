"""Health endpoints: presence flags only; a real DB round trip; 503 when the DB is down.

/health is the load balancer's check (the DB plus two indexed reads). /health?deep=1 is the uptime
monitor's: it also answers 503 when the task cluster's heartbeat is stale, and lists django-q2's clusters.
"""
import logging

from django.http import JsonResponse
from django.views.decorators.cache import never_cache
from django.views.decorators.http import require_GET

from billing_console.ops.health import cloud_health, config_flags, db_ok
from billing_console.ops.heartbeat import cluster_state, cluster_stats

log = logging.getLogger("billing_console.ops")


@never_cache
@require_GET
def health(request):
    ok = db_ok()
    body = {"ok": ok, "db": ok, "config": config_flags()}
    deep = request.GET.get("deep") in ("1", "true", "yes")
    if ok:
        try:
            body.update(cluster_state())
        except Exception as exc:  # e.g. new code before its migration: the LB check must still answer
            log.warning("cluster state unavailable: %s", type(exc).__name__)
            body["cluster"] = {"state": "unknown"}
    if deep:
        body["deep"] = True
        if ok and body["cluster"]["state"] != "running":
            body["ok"] = False
        try:
            body["cluster"]["stats"] = cluster_stats() if ok else []
        except Exception as exc:  # the broker being down is reported, the heartbeat decides the status
            log.warning("cluster stats unavailable: %s", type(exc).__name__)
            if ok:
                body["cluster"]["stats"] = None
    return JsonResponse(body, status=200 if body["ok"] else 503)


@never_cache
@require_GET
def cloud_health_view(request):
    body = cloud_health()
    return JsonResponse(body, status=200 if body["ok"] else 503)
