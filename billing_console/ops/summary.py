"""The ops summary (`GET /api/ops/summary`, bearer OPS_SECRET) and the daily health report.

Apps add their own sections without the core importing them, from their AppConfig.ready():

    from billing_console.ops.summary import register_ops_section
    register_ops_section("dunning", dunning_ops_section)

`fn()` returns a JSON-able dict shown under its name. Two optional keys are lifted out of it:
`"emails24h": {"sent": n, "failed": n}` (added to the email totals, per source) and
`"problems": ["..."]` (what the daily report should alert on). Counts only, never a secret.
"""
from __future__ import annotations

import hmac
import logging
from contextlib import contextmanager
from datetime import datetime, timedelta
from typing import Callable, Iterator

from django.conf import settings
from django.core.mail import send_mail
from django.db.models import Count, Max, Q
from django.http import JsonResponse
from django.utils import timezone
from django.views.decorators.cache import never_cache
from django.views.decorators.http import require_GET

from billing_console.errors import error_body
from billing_console.models import CheckoutAttempt, CronRun, DriftItem, Invoice, InvoiceEvent, ReconciliationRun
from billing_console.ops.alerts import open_alerts_section
from billing_console.ops.logging import redact
from billing_console.wording import counted

log = logging.getLogger("billing_console.ops")

_sections: dict[str, Callable[[], dict]] = {}
FUNNEL_DAYS = 7
# A daily reconciliation older than this means the cron stopped.
RECONCILE_STALE_HOURS = 26
RESERVED = {"generatedAt", "ok", "problems", "checkout", "emails24h", "invoices", "reconciliation", "crons", "alerts"}


def register_ops_section(name: str, fn: Callable[[], dict]) -> Callable[[], dict]:
    if name in RESERVED:
        raise ValueError(f"{name!r} is a core section of the ops summary.")
    _sections[name] = fn
    return fn


def ops_section_names() -> list[str]:
    """The sections apps registered, in registration order."""
    return list(_sections)


@contextmanager
def ops_sections_restored() -> Iterator[None]:
    """Sections registered inside the block are gone after it (tests that add their own)."""
    saved = dict(_sections)
    try:
        yield
    finally:
        _sections.clear()
        _sections.update(saved)


def _iso(value):
    return value.isoformat() if value else None


def _checkout(since) -> dict:
    counts = CheckoutAttempt.objects.filter(created_at__gte=since).aggregate(
        pending=Count("pk", filter=Q(status=CheckoutAttempt.Status.PENDING)),
        paid=Count("pk", filter=Q(status=CheckoutAttempt.Status.PAID)),
        abandoned=Count("pk", filter=Q(status=CheckoutAttempt.Status.ABANDONED)),
        follow_up_sent=Count("pk", filter=Q(follow_up_status=CheckoutAttempt.FollowUp.SENT)),
        follow_up_failed=Count("pk", filter=Q(follow_up_status=CheckoutAttempt.FollowUp.FAILED)),
        follow_up_queued=Count("pk", filter=Q(follow_up_status=CheckoutAttempt.FollowUp.QUEUED)),
    )
    return {
        "windowDays": FUNNEL_DAYS,
        "pending": counts["pending"], "paid": counts["paid"], "abandoned": counts["abandoned"],
        "followUp": {"sent": counts["follow_up_sent"], "failed": counts["follow_up_failed"],
                     "queued": counts["follow_up_queued"]},
    }


def _emails(day_ago) -> dict:
    invoice = InvoiceEvent.objects.filter(at__gte=day_ago).aggregate(
        sent=Count("pk", filter=Q(kind="email_sent")), failed=Count("pk", filter=Q(kind="email_failed")))
    follow_up = CheckoutAttempt.objects.aggregate(
        sent=Count("pk", filter=Q(follow_up_status=CheckoutAttempt.FollowUp.SENT, follow_up_sent_at__gte=day_ago)),
        # Failed follow-ups carry no send time; those of checkouts started in the window are counted.
        failed=Count("pk", filter=Q(follow_up_status=CheckoutAttempt.FollowUp.FAILED, created_at__gte=day_ago)))
    return {"sent": invoice["sent"] + follow_up["sent"], "failed": invoice["failed"] + follow_up["failed"],
            "bySource": {"invoice": invoice, "checkoutFollowUp": follow_up}}


def _invoices() -> dict:
    counts = Invoice.objects.aggregate(
        failed=Count("pk", filter=Q(delivery_status=Invoice.Delivery.FAILED)),
        retrying=Count("pk", filter=Q(delivery_status__in=[Invoice.Delivery.PENDING, Invoice.Delivery.RENDERED],
                                      delivery_attempts__gt=0, emailed_at__isnull=True)),
    )
    return {"deliveryFailed": counts["failed"], "deliveryRetrying": counts["retrying"]}


def _reconciliation() -> dict:
    last = ReconciliationRun.objects.exclude(status=ReconciliationRun.Status.RUNNING).order_by("-started_at").first()
    open_drift = DriftItem.objects.filter(resolution=DriftItem.Resolution.OPEN).count()
    if last is None:
        return {"lastRun": None, "openDriftItems": open_drift}
    return {"lastRun": {"id": last.pk, "status": last.status, "startedAt": _iso(last.started_at),
                        "finishedAt": _iso(last.finished_at), "driftCount": last.drift_count,
                        "checked": {k: v for k, v in (last.checked or {}).items() if isinstance(v, int)}},
            "openDriftItems": open_drift}


def _crons() -> list[dict]:
    from billing_console.ops.schedules import SCHEDULES

    latest = dict(CronRun.objects.exclude(status=CronRun.Status.SKIPPED).values("name")
                  .annotate(at=Max("started_at")).values_list("name", "at"))
    runs = {r.name: r for r in CronRun.objects.filter(
        Q(*[Q(name=n, started_at=at) for n, at in latest.items()], _connector=Q.OR))} if latest else {}
    names = [c.name for c in SCHEDULES] + sorted(set(runs) - {c.name for c in SCHEDULES})
    return [{"name": name, "lastStatus": runs[name].status if name in runs else None,
             "lastStartedAt": _iso(runs[name].started_at) if name in runs else None,
             "lastFinishedAt": _iso(runs[name].finished_at) if name in runs else None,
             "counts": runs[name].counts if name in runs else {}} for name in names]


def ops_summary(*, now=None) -> dict:
    """Everything an operator checks in the morning, as counts. Also used by the admin dashboard."""
    now = now or timezone.now()
    day_ago = now - timedelta(hours=24)
    summary = {
        "generatedAt": now.isoformat(),
        "checkout": _checkout(now - timedelta(days=FUNNEL_DAYS)),
        "emails24h": _emails(day_ago),
        "invoices": _invoices(),
        "reconciliation": _reconciliation(),
        "crons": _crons(),
        # What the last alert_check found and has not seen resolved (the alerts' own problems, below).
        "alerts": open_alerts_section(),
    }
    problems: list[str] = []
    for name, fn in _sections.items():
        try:
            section = dict(fn() or {})
        except Exception as exc:  # one broken section must not take the whole summary down
            log.exception("ops section %s failed", name, extra={"event": "ops_section_failed", "section": name})
            section = {"error": redact(f"{type(exc).__name__}: {exc}")[:200]}
            problems.append(f"Ops section {name} failed.")
        emails = section.pop("emails24h", None)
        if isinstance(emails, dict):
            sent, failed = int(emails.get("sent", 0)), int(emails.get("failed", 0))
            summary["emails24h"]["bySource"][name] = {"sent": sent, "failed": failed}
            summary["emails24h"]["sent"] += sent
            summary["emails24h"]["failed"] += failed
        problems += [str(p) for p in section.pop("problems", []) or []]
        summary[name] = section
    problems += [f"Alert open since {a['since'][:16]}: {a['title']}" for a in summary["alerts"]]
    summary["problems"] = _core_problems(summary, now) + problems
    summary["ok"] = not summary["problems"]
    return summary


def _core_problems(summary: dict, now) -> list[str]:
    problems = []
    if summary["emails24h"]["failed"]:
        problems.append(f"{counted(summary['emails24h']['failed'], 'email')} failed in the last 24 hours.")
    if summary["invoices"]["deliveryFailed"]:
        problems.append(f"{counted(summary['invoices']['deliveryFailed'], 'invoice')} could not be delivered.")
    last = summary["reconciliation"]["lastRun"]
    if last is None:
        problems.append("Reconciliation has never run.")
    else:
        if last["status"] != ReconciliationRun.Status.CLEAN:
            problems.append(f"The last reconciliation ended {last['status']} ({counted(last['driftCount'], 'drift item')}).")
        started = datetime.fromisoformat(last["startedAt"])
        if now - started > timedelta(hours=RECONCILE_STALE_HOURS):
            problems.append(f"No reconciliation for more than {RECONCILE_STALE_HOURS} hours.")
    for cron in summary["crons"]:
        if cron["lastStatus"] in (CronRun.Status.ERRORS, CronRun.Status.ABANDONED):
            problems.append(f"Cron {cron['name']} last ended {cron['lastStatus']}.")
    return problems


def ops_daily_report(*, now=None) -> dict:
    """Log the summary every day; email OPS_EMAIL only when something is wrong."""
    summary = ops_summary(now=now)
    emailed = False
    log.info("daily_health_report ok=%s problems=%d", summary["ok"], len(summary["problems"]),
             extra={"event": "daily_health_report", "ok": summary["ok"], "problems": summary["problems"]})
    if summary["problems"] and settings.OPS_EMAIL:
        body = "\n".join(["Something needs attention in the Billing Console:", ""]
                         + [f"  - {p}" for p in summary["problems"]]
                         + ["", f"Full summary: GET {settings.SITE_URL}/api/ops/summary (bearer OPS_SECRET)",
                            f"Admin: {settings.SITE_URL}/admin/"])
        try:
            send_mail(f"[Billing Console] Daily health: {counted(len(summary['problems']), 'problem')}", body,
                      settings.DEFAULT_FROM_EMAIL, [settings.OPS_EMAIL])
            emailed = True
        except Exception as exc:
            log.error("daily health email failed: %s", redact(str(exc)),
                      extra={"event": "email_failed", "template": "daily_health_report"})
    return {**summary, "emailed": emailed}


# --- The endpoint -----------------------------------------------------------------------------
@never_cache
@require_GET
def ops_summary_view(request):
    secret = settings.OPS_SECRET
    if not secret:
        return JsonResponse(error_body("not_configured", "The ops endpoint is disabled: OPS_SECRET is not configured."),
                            status=503)
    header = request.headers.get("Authorization", "")
    scheme, _, token = header.partition(" ")
    if scheme.lower() != "bearer" or not hmac.compare_digest(token.strip().encode(), secret.encode()):
        response = JsonResponse(error_body("unauthorized", "Missing or wrong bearer token."), status=401)
        response["WWW-Authenticate"] = 'Bearer realm="ops"'
        return response
    return JsonResponse(ops_summary())
