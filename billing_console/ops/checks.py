"""The console's system checks (tag "billing"): `manage.py check` shows them, `preflight` gates on them.

Only presence and shape are reported, never a value.
"""
from __future__ import annotations

import re

from django.conf import settings
from django.core.checks import Error, Warning, register
from billing_console.wording import counted

KEY_SHAPE = re.compile(r"^(sk|rk)_(test|live)_[A-Za-z0-9]{24,}$")


def preflight_problems(mode: str | None = None) -> list[tuple[str, str]]:
    """[(id, message)] of every blocker for going live (mode "live") or running in test mode."""
    from billing_console.ops.schedules import SCHEDULES

    mode = mode or ("live" if settings.STRIPE_LIVE_MODE else "test")
    live = mode == "live"
    problems: list[tuple[str, str]] = []
    key = settings.STRIPE_SECRET_KEY
    if not key:
        problems.append(("BC001", "STRIPE_SECRET_KEY is not set."))
    elif not KEY_SHAPE.match(key):
        problems.append(("BC002", "STRIPE_SECRET_KEY does not look like a Stripe secret or restricted key."))
    else:
        key_mode = key.split("_")[1]
        if key_mode != mode:
            problems.append(("BC003", f"STRIPE_SECRET_KEY is a {key_mode}-mode key but the mode is {mode}."))
    if settings.STRIPE_LIVE_MODE != live:
        problems.append(("BC004", f"STRIPE_LIVE_MODE is {settings.STRIPE_LIVE_MODE} but preflight checks mode {mode}."))
    if not settings.STRIPE_WEBHOOK_SECRET:
        problems.append(("BC005", "STRIPE_WEBHOOK_SECRET is not set."))
    elif not settings.STRIPE_WEBHOOK_SECRET.startswith("whsec_"):
        problems.append(("BC006", "STRIPE_WEBHOOK_SECRET does not start with whsec_."))
    if not any(plan["price_id"] for plan in settings.PLANS.values()):
        problems.append(("BC007", "No plan has a Stripe price id (STRIPE_PRICE_PRO, STRIPE_PRICE_TEAM)."))
    for code, plan in settings.PLANS.items():
        if plan["price_id"] and not plan["price_id"].startswith("price_"):
            problems.append(("BC008", f"The price id of plan {code} does not start with price_."))
    if len(settings.CLOUD_MASTER_KEY or "") < 16:
        problems.append(("BC009", "CLOUD_MASTER_KEY is missing or shorter than 16 characters."))
    if not settings.LICENSE_SIGNING_KEY:
        problems.append(("BC010", "LICENSE_SIGNING_KEY is not set."))
    if not settings.HELM_BUNDLE_MANIFEST_URL:
        problems.append(("BC011", "HELM_BUNDLE_MANIFEST_URL is not set."))
    elif not settings.HELM_BUNDLE_MANIFEST_URL.startswith(
            ("https://", "file://") if live or not settings.DEPLOY_ALLOW_HTTP_BUNDLES else ("https://", "http://", "file://")):
        problems.append(("BC012", "HELM_BUNDLE_MANIFEST_URL must be an https:// or file:// URL."))
    if settings.EMAIL_BACKEND.endswith(("console.EmailBackend", "locmem.EmailBackend", "dummy.EmailBackend")):
        problems.append(("BC013", "Email is not configured (EMAIL_URL or EMAIL_PROVIDER): customers get no manage links."))
    if not settings.OPS_SECRET:
        problems.append(("BC014", "OPS_SECRET is not set: /api/ops/summary answers 503."))
    if live and settings.DEBUG:
        problems.append(("BC015", "DEBUG is on in live mode."))
    if live and getattr(settings, "STRIPE_API_HOST", ""):
        problems.append(("BC016", "STRIPE_API_HOST points the console at a Stripe stand-in in live mode."))
    problems += _schedule_problems(SCHEDULES)
    problems += _migration_problems()
    return problems


def _schedule_problems(schedules) -> list[tuple[str, str]]:
    try:
        from django_q.models import Schedule

        registered = set(Schedule.objects.filter(name__in=[s.name for s in schedules]).values_list("name", flat=True))
    except Exception:
        return [("BC020", "Schedules cannot be read (database not migrated?).")]
    missing = [s.name for s in schedules if s.name not in registered]
    return [("BC021", f"Schedules not registered: {', '.join(missing)} (run manage.py setup_schedules).")] if missing else []


def _migration_problems() -> list[tuple[str, str]]:
    from django.db import connection
    from django.db.migrations.executor import MigrationExecutor

    try:
        executor = MigrationExecutor(connection)
        pending = executor.migration_plan(executor.loader.graph.leaf_nodes())
    except Exception:
        return [("BC030", "Migrations cannot be checked (database unreachable?).")]
    return [("BC031", f"{counted(len(pending), 'migration')} not applied (run manage.py migrate).")] if pending else []


@register("billing")
def billing_configuration_check(app_configs, **kwargs):
    """Shown by `manage.py check`: blockers as warnings (a dev machine may lack them), errors in production."""
    level = Error if settings.PRODUCTION else Warning
    problems = preflight_problems()
    # Schedules and migrations need the database, which `check` must not require.
    return [level(msg, id=f"billing.{pid}") for pid, msg in problems if pid < "BC020"]
