"""What the health endpoints and the admin dashboard report. Presence flags only, never values.

Apps add their own sections without the core importing them:
`register_cloud_health(fn)` -- fn() returns a dict merged into /api/cloud/health (e.g. deployments).
"""
from __future__ import annotations

from typing import Callable

from django.conf import settings
from django.db import connection

_cloud_providers: list[Callable[[], dict]] = []


def register_cloud_health(fn: Callable[[], dict]) -> Callable[[], dict]:
    if fn not in _cloud_providers:
        _cloud_providers.append(fn)
    return fn


def unregister_cloud_health(fn: Callable[[], dict]) -> None:
    if fn in _cloud_providers:
        _cloud_providers.remove(fn)


def config_flags() -> dict[str, bool]:
    plans = settings.PLANS.values()
    return {
        "hasStripeKey": bool(settings.STRIPE_SECRET_KEY),
        "hasWebhookSecret": bool(settings.STRIPE_WEBHOOK_SECRET),
        "hasStripePrice": any(p["price_id"] for p in plans),
        "hasCloudMasterKey": len(settings.CLOUD_MASTER_KEY or "") >= 16,
        "hasManifestUrl": bool(settings.HELM_BUNDLE_MANIFEST_URL),
        "hasLicenseSigningKey": bool(settings.LICENSE_SIGNING_KEY),
        "hasOpsSecret": bool(settings.OPS_SECRET),
        "hasEmail": not settings.EMAIL_BACKEND.endswith(("console.EmailBackend", "locmem.EmailBackend", "dummy.EmailBackend")),
        "hasWhatsApp": bool(settings.EVOLUTION_API_URL and settings.EVOLUTION_API_KEY),
    }


def db_ok() -> bool:
    try:
        connection.ensure_connection()
        with connection.cursor() as cursor:
            cursor.execute("SELECT 1")
            cursor.fetchone()
        return True
    except Exception:
        return False


def cloud_health() -> dict:
    """/api/cloud/health: readiness of managed deployments plus what the deployments app reports."""
    ok = db_ok()
    flags = config_flags()
    cloud_flags = {k: flags[k] for k in ("hasStripeKey", "hasStripePrice", "hasCloudMasterKey", "hasManifestUrl")}
    cloud_flags["hasDb"] = ok
    body = {
        "ok": ok,
        "ready": ok and all(cloud_flags.values()),
        "config": cloud_flags,
        "deployments": {"total": 0, "active": 0, "paused": 0, "errored": 0},
        "cron": {"lastRunAt": None, "lastRunStatus": None, "recent": []},
    }
    if ok:
        for provider in _cloud_providers:
            for key, value in provider().items():
                if isinstance(value, dict) and isinstance(body.get(key), dict):
                    body[key].update(value)
                else:
                    body[key] = value
    return body
