"""Health endpoints: presence flags only; a real DB round trip; 503 when the DB is down."""
from django.http import JsonResponse
from django.views.decorators.cache import never_cache
from django.views.decorators.http import require_GET

from billing_console.ops.health import cloud_health, config_flags, db_ok


@never_cache
@require_GET
def health(request):
    ok = db_ok()
    return JsonResponse({"ok": ok, "db": ok, "config": config_flags()}, status=200 if ok else 503)


@never_cache
@require_GET
def cloud_health_view(request):
    body = cloud_health()
    return JsonResponse(body, status=200 if body["ok"] else 503)
