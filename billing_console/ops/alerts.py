"""Alerts between daily reports: the `alert_check` cron (every 10 minutes) asks every provider what is
wrong now, opens an `Alert` per new problem and resolves the ones no longer found. Each problem is
announced once when it starts and once when it ends (email to OPS_EMAIL, and a Slack-compatible
`{"text": ...}` POST to ALERT_WEBHOOK_URL when set), never on every run.

Apps add their checks without the core importing them, from their AppConfig.ready():

    from billing_console.ops.alerts import Problem, register_alert_provider
    register_alert_provider(dunning_problems)   # fn(now) -> list[Problem]

Disputes: the core keeps no dispute rows; whatever stores them registers a provider returning
`Problem("dispute_open:<dp_id>", ...)` (runbook entry "Open dispute").
"""
from __future__ import annotations

import json
import logging
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Callable

import httpx
from croniter import croniter
from django.conf import settings
from django.core.mail import send_mail
from django.db import transaction
from django.db.models import Max
from django.utils import timezone

from billing_console.wording import counted
from billing_console.models import Alert, CronRun, Invoice, WebhookEvent
from billing_console.ops.logging import redact

log = logging.getLogger("billing_console.ops")


@dataclass(frozen=True)
class Problem:
    key: str  # stable while the problem lasts: the same key on the next run is the same alert
    title: str
    detail: str = ""
    runbook: str = ""  # the runbook entry's heading


Provider = Callable[[datetime], list[Problem]]
_providers: list[Provider] = []


def register_alert_provider(fn: Provider) -> Provider:
    if fn not in _providers:
        _providers.append(fn)
    return fn


# --- The core's checks ------------------------------------------------------------------------
def cron_problems(now: datetime) -> list[Problem]:
    """A cron whose last run failed, or that has not started since two of its slots went by."""
    from billing_console.ops.schedules import SCHEDULES

    names = [c.name for c in SCHEDULES if c.name != "heartbeat"]  # the heartbeat has its own check
    last = {r["name"]: r for r in CronRun.objects.filter(name__in=names).exclude(status=CronRun.Status.SKIPPED)
            .values("name").annotate(started=Max("started_at")).order_by()}
    latest = {r.name: r for r in CronRun.objects.filter(
        name__in=names, started_at__in=[r["started"] for r in last.values()]).only("name", "status", "error_summary",
                                                                                  "started_at")
        if r.started_at == last[r.name]["started"]}
    problems = []
    for cron in SCHEDULES:
        if cron.name not in last:
            continue  # never ran: a fresh install; the heartbeat says whether the cluster runs at all
        run = latest.get(cron.name)
        if run and run.status in (CronRun.Status.ERRORS, CronRun.Status.ABANDONED):
            problems.append(Problem(f"cron_failing:{cron.name}", f"Cron {cron.name} last ended {run.status}.",
                                    redact(run.error_summary or "")[:500], "Cron failing"))
        # Late: two scheduled slots passed since its last start (one slot of slack for a long run).
        slots = croniter(cron.cron, now)
        slots.get_prev(datetime)
        second_last_slot = slots.get_prev(datetime)
        if last[cron.name]["started"] < second_last_slot - timedelta(minutes=settings.ALERT_CRON_GRACE_MINUTES):
            problems.append(Problem(f"cron_late:{cron.name}", f"Cron {cron.name} is late: last started "
                                    f"{last[cron.name]['started']:%Y-%m-%d %H:%M} UTC ({cron.cron}).",
                                    runbook="Cron late"))
    return problems


def heartbeat_problems(now: datetime) -> list[Problem]:
    from billing_console.ops.heartbeat import cluster_state

    cluster = cluster_state(now=now)["cluster"]
    if cluster["state"] == "stale":
        return [Problem("cluster_heartbeat_stale", f"The task cluster's heartbeat is {cluster['heartbeatAgeSeconds']} s "
                        "old.", runbook="Cluster heartbeat stale")]
    return []


def stripe_event_problems(now: datetime) -> list[Problem]:
    W = WebhookEvent
    failed = W.objects.filter(status=W.Status.FAILED).count()
    waiting = W.objects.filter(status__in=[W.Status.RECEIVED, W.Status.PROCESSING],
                               received_at__lt=now - timedelta(minutes=settings.ALERT_EVENT_WAIT_MINUTES)).count()
    problems = []
    if failed:
        problems.append(Problem("stripe_events_failed", f"{counted(failed, 'Stripe event')} failed to apply.",
                                runbook="Stripe events failed"))
    if waiting:
        problems.append(Problem("stripe_events_waiting", f"{counted(waiting, 'Stripe event')} waiting for more than "
                                f"{settings.ALERT_EVENT_WAIT_MINUTES} minutes.", runbook="Stripe events waiting"))
    return problems


def invoice_problems(now: datetime) -> list[Problem]:
    gave_up = Invoice.objects.filter(delivery_status=Invoice.Delivery.FAILED).count()
    if gave_up:
        return [Problem("invoice_delivery_failed", f"{counted(gave_up, 'invoice')} could not be delivered (retries exhausted).",
                        runbook="Invoice delivery gave up")]
    return []


CORE_PROVIDERS: list[Provider] = [cron_problems, heartbeat_problems, stripe_event_problems, invoice_problems]


def problems_now(now: datetime | None = None) -> list[Problem]:
    """Every problem every provider finds; a provider that breaks is itself a problem."""
    now = now or timezone.now()
    found: dict[str, Problem] = {}
    for fn in [*CORE_PROVIDERS, *_providers]:
        name = getattr(fn, "__qualname__", str(fn))
        try:
            for problem in fn(now) or []:
                found.setdefault(problem.key, problem)
        except Exception as exc:
            log.exception("alert provider %s failed", name, extra={"event": "alert_provider_failed"})
            found[f"alert_check_failed:{name}"] = Problem(f"alert_check_failed:{name}", f"The alert check {name} "
                                                          f"failed: {redact(type(exc).__name__ + ': ' + str(exc))[:200]}",
                                                          runbook="Alert check failed")
    return list(found.values())


# --- Opening, resolving, notifying ------------------------------------------------------------
def alerts_check(*, now: datetime | None = None) -> dict:
    """One run of `alert_check`: providers first (they may call out: no lock held), then one short
    transaction that opens and resolves, then the notifications."""
    now = now or timezone.now()
    problems = {p.key: p for p in problems_now(now)}
    with transaction.atomic():
        open_alerts = {a.key: a for a in Alert.objects.select_for_update().filter(resolved_at__isnull=True)}
        for key, alert in open_alerts.items():
            if key in problems:
                p = problems[key]
                Alert.objects.filter(pk=alert.pk).update(last_seen_at=now, title=p.title[:500], detail=p.detail)
            else:
                Alert.objects.filter(pk=alert.pk).update(resolved_at=now)
        for key, p in problems.items():
            if key not in open_alerts:
                Alert.objects.create(key=key, title=p.title[:500], detail=p.detail, runbook=p.runbook,
                                     last_seen_at=now)
    # Not yet announced: new ones, and any whose announcement failed last time.
    to_open = list(Alert.objects.filter(opened_notified=False, resolved_at__isnull=True).order_by("opened_at"))
    to_resolve = list(Alert.objects.filter(resolved_at__isnull=False, resolved_notified=False).order_by("opened_at"))
    # An alert that opened and resolved before it could be announced is announced as resolved only.
    sent = alerts_notify(opened=to_open, resolved=to_resolve) if (to_open or to_resolve) else True
    if sent:
        Alert.objects.filter(pk__in=[a.pk for a in to_open]).update(opened_notified=True)
        Alert.objects.filter(pk__in=[a.pk for a in to_resolve]).update(resolved_notified=True, opened_notified=True)
    return {"open": len(problems), "opened": len(to_open), "resolved": len(to_resolve), "notified": sent}


def _message(opened: list[Alert], resolved: list[Alert]) -> str:
    lines = []
    if opened:
        lines.append(f"{counted(len(opened), 'new problem')} in {settings.SITE_NAME}:")
        lines += [f"  - {a.title}" + (f" (runbook: {a.runbook})" if a.runbook else "") for a in opened]
    if resolved:
        lines.append(f"{counted(len(resolved), 'problem')} resolved:")
        lines += [f"  - {a.title}" for a in resolved]
    lines.append(f"Admin: {settings.SITE_URL}/admin/billing_console/alert/  Runbook: docs/runbook.md")
    return redact("\n".join(lines))


def alerts_notify(*, opened: list[Alert], resolved: list[Alert]) -> bool:
    """Email OPS_EMAIL and POST to ALERT_WEBHOOK_URL; True when every configured channel took it."""
    text = _message(opened, resolved)
    ok = True
    if settings.OPS_EMAIL:
        subject = (f"[{settings.SITE_NAME}] {counted(len(opened), 'new problem')}" if opened
                   else f"[{settings.SITE_NAME}] {counted(len(resolved), 'problem')} resolved")
        try:
            send_mail(subject, text, settings.DEFAULT_FROM_EMAIL, [settings.OPS_EMAIL])
        except Exception as exc:
            ok = False
            log.error("alert email failed: %s", redact(str(exc)), extra={"event": "alert_email_failed"})
    if settings.ALERT_WEBHOOK_URL:
        try:
            response = httpx.post(settings.ALERT_WEBHOOK_URL, content=json.dumps({"text": text}),
                                  headers={"Content-Type": "application/json"}, timeout=settings.ALERT_WEBHOOK_TIMEOUT)
            response.raise_for_status()
        except httpx.HTTPError as exc:
            ok = False
            log.error("alert webhook failed: %s", type(exc).__name__, extra={"event": "alert_webhook_failed"})
    if not settings.OPS_EMAIL and not settings.ALERT_WEBHOOK_URL:
        log.warning("alerts found but neither OPS_EMAIL nor ALERT_WEBHOOK_URL is set: %s", text,
                    extra={"event": "alert_unrouted"})
    return ok


def alert_check_cron() -> None:
    from billing_console.services import cron_guard

    with cron_guard("alert_check") as run:
        if run is not None:
            run.counts = alerts_check()


def open_alerts_section() -> list[dict]:
    """The open alerts, for the ops summary (one query)."""
    return [{"key": a.key, "title": a.title, "since": a.opened_at.isoformat(), "runbook": a.runbook}
            for a in Alert.objects.filter(resolved_at__isnull=True).order_by("opened_at")[:50]]
