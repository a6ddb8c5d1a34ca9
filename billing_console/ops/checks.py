"""The console's system checks (tag "billing"): `manage.py check` shows them, `preflight` gates on them.

Only presence and shape are reported, never a value.
"""
from __future__ import annotations

import re
from datetime import timedelta
from typing import Callable

from django.conf import settings
from django.core.checks import Error, Warning, register
from billing_console.wording import counted

KEY_SHAPE = re.compile(r"^(sk|rk)_(test|live)_[A-Za-z0-9]{24,}$")
BACKUP_MAX_AGE = timedelta(hours=26)

# Checks an app adds from its AppConfig.ready() (deployments: a release in the manifest): fn(mode) -> [(id, msg)].
# They may call the network, so only `preflight` runs them, never `manage.py check`.
PreflightCheck = Callable[[str], list[tuple[str, str]]]
_app_checks: list[PreflightCheck] = []


def register_preflight_check(fn: PreflightCheck) -> PreflightCheck:
    if fn not in _app_checks:
        _app_checks.append(fn)
    return fn


def preflight_problems(mode: str | None = None, *, online: bool = True,
                       warnings: list | None = None) -> list[tuple[str, str]]:
    """[(id, message)] of every blocker for going live (mode "live") or running in test mode. `online`: also
    ask Stripe, the apps' checks and the database (what `manage.py check` must not need). `warnings`: a list
    that receives what is worth fixing but blocks nothing (the mirror's event types on the endpoint)."""
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
    if live and not settings.SITE_URL.startswith("https://"):
        problems.append(("BC017", "SITE_URL is not an https:// URL in live mode: manage links and Stripe's return "
                                  "URLs would travel in the clear."))
    if not settings.SUPPORT_EMAIL:
        problems.append(("BC018", "SUPPORT_EMAIL is not set: customers have no support inbox to reply to."))
    problems += _proxy_problems()
    if not online:
        return problems
    if key and KEY_SHAPE.match(key):  # Stripe is only asked once the key itself is right
        from billing_console.stripe.endpoint import webhook_endpoint_problems

        problems += webhook_endpoint_problems(warnings=warnings)
    problems += _schedule_problems(SCHEDULES)
    problems += _migration_problems()
    problems += _backup_problems()
    problems += _portal_configuration_problems()
    for check in _app_checks:
        problems += check(mode)
    return problems


def _proxy_problems() -> list[tuple[str, str]]:
    """Rate limits key on the client address: it must come from the right hop of X-Forwarded-For."""
    behind_proxy = bool(getattr(settings, "SECURE_PROXY_SSL_HEADER", None))
    hops = settings.TRUSTED_PROXY_HOPS
    if behind_proxy and hops == 0:
        return [("BC019", "SECURE_PROXY_SSL_HEADER says the console is behind a proxy but TRUSTED_PROXY_HOPS is 0: "
                          "every client has the proxy's address and shares one rate-limit bucket.")]
    if not behind_proxy and hops > 0:
        return [("BC019", f"TRUSTED_PROXY_HOPS is {hops} but SECURE_PROXY_SSL_HEADER is not set: without a proxy "
                          "in front, clients write X-Forwarded-For themselves and choose their rate-limit bucket.")]
    return []


def _backup_problems() -> list[tuple[str, str]]:
    """A backup in the last 26 hours (the daily schedule plus slack): the newest file in storage."""
    from django.core.files.storage import default_storage
    from django.utils import timezone

    from billing_console.ops.backups import FILE_PREFIX, FILE_SUFFIX, STORAGE_DIR

    try:
        _, files = default_storage.listdir(STORAGE_DIR)
    except (FileNotFoundError, NotImplementedError, OSError):
        files = []
    ours = sorted(f for f in files if f.startswith(FILE_PREFIX) and f.endswith(FILE_SUFFIX))
    if not ours:
        return [("BC042", "No backup has been taken (run manage.py backup_export, and setup_schedules for the daily one).")]
    try:
        taken = default_storage.get_modified_time(f"{STORAGE_DIR}/{ours[-1]}")
    except (NotImplementedError, OSError):
        return [("BC042", "The newest backup's time cannot be read from storage.")]
    if timezone.is_naive(taken):
        taken = timezone.make_aware(taken, timezone.get_default_timezone())
    age = timezone.now() - taken
    if age > BACKUP_MAX_AGE:
        return [("BC042", f"The newest backup is {age.total_seconds() / 3600:.0f} hours old (more than 26): "
                          "check the backup_export schedule.")]
    return []


def _portal_configuration_problems() -> list[tuple[str, str]]:
    """The manage page and the desktop app open Stripe's Customer Portal: it needs an active configuration."""
    from billing_console.stripe import gateway as stripe_gateway

    if not stripe_gateway.configured():
        return []  # BC001 already says so
    try:
        page = stripe_gateway.list_page("billing_portal_configurations", {"active": True, "limit": 1})
    except stripe_gateway.StripeGatewayError as exc:
        return [("BC043", f"Stripe's billing portal configurations cannot be read: {exc.message}")]
    if not page.get("data"):
        return [("BC043", "Stripe has no active Customer Portal configuration: set one up in the Stripe dashboard "
                          "(Settings > Billing > Customer portal).")]
    return []


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
    # Schedules, migrations, backups, Stripe and the apps' checks need the database or the network, which
    # `check` must not require.
    problems = preflight_problems(online=False)
    return [level(msg, id=f"billing.{pid}") for pid, msg in problems if pid < "BC020"]
