"""The support console's front page: a few numbers per area, each linking to the filtered list behind it.

The core fills readiness, crons, Stripe events, checkouts and reconciliation. Apps add their own
area without the core importing them: `register_dashboard_section(fn)` from their AppConfig.ready(),
where fn(request) returns a `Section` (or None to show nothing). Every section runs a fixed number of
queries, so the page costs the same with ten customers or a million.
"""
from __future__ import annotations

import logging
from dataclasses import dataclass, field
from datetime import timedelta
from typing import Callable
from urllib.parse import urlencode

from django.core.cache import cache
from django.db.models import Count, OuterRef, Q, Subquery
from django.urls import NoReverseMatch, reverse
from django.utils import timezone

from billing_console.wording import counted

log = logging.getLogger("billing_console")

OK, WARN, BAD, IDLE = "ok", "warn", "bad", "idle"
READINESS_CACHE_SECONDS = 60


@dataclass(frozen=True)
class Stat:
    label: str
    value: int | str
    url: str = ""
    tone: str = ""  # ok | warn | bad | idle: the colour support reads before the number
    note: str = ""


@dataclass(frozen=True)
class Section:
    title: str
    stats: list[Stat]
    order: int = 100
    rows: list[Stat] = field(default_factory=list)  # a detail list under the numbers (e.g. one line per cron)
    note: str = ""


SectionProvider = Callable[[object], "Section | None"]
_providers: list[SectionProvider] = []


def register_dashboard_section(fn: SectionProvider) -> SectionProvider:
    if fn not in _providers:
        _providers.append(fn)
    return fn


def unregister_dashboard_section(fn: SectionProvider) -> None:
    if fn in _providers:
        _providers.remove(fn)


def changelist_url(request, app_label: str, model_name: str, **filters) -> str:
    """The admin list of a model with filters applied, or "" when the model is not in the admin or the
    user may not see it (a number without a link is better than a link to a 403)."""
    try:
        url = reverse(f"admin:{app_label}_{model_name}_changelist")
    except NoReverseMatch:
        return ""
    user = getattr(request, "user", None)
    if user is not None and not user.has_perm(f"{app_label}.view_{model_name}") \
            and not user.has_perm(f"{app_label}.change_{model_name}"):
        return ""
    return f"{url}?{urlencode(filters)}" if filters else url


def may_see_dashboard(user) -> bool:
    """The numbers and blockers are for staff who may look at some console list; others see only a note."""
    from billing_console.ops.support import CONSOLE_APPS

    return user is not None and user.is_active and any(user.has_module_perms(app) for app in CONSOLE_APPS)


def dashboard_sections(request) -> list[Section]:
    if not may_see_dashboard(getattr(request, "user", None)):
        return []
    sections = [s for s in (core(request) for core in _CORE) if s is not None]
    for provider in _providers:
        try:
            section = provider(request)
        except Exception:  # one broken area must not take the whole console's front page down
            log.exception("dashboard section %s failed", getattr(provider, "__name__", provider))
            section = Section(title=getattr(provider, "__name__", "section"), order=999,
                              stats=[Stat("Could not be read", "!", tone=BAD, note="See the server log.")])
        if section is not None:
            sections.append(section)
    return sorted(sections, key=lambda s: s.order)


# --- Core sections ------------------------------------------------------------------------------
def readiness_section(request) -> Section:
    """The preflight summary (GO / NO_GO). Cached briefly: it reads the migration graph."""
    from billing_console.ops.checks import preflight_problems

    problems = cache.get("bc:dashboard:preflight")
    if problems is None:
        # Not Stripe's endpoint list: a page render must not wait on Stripe.
        problems = [list(p) for p in preflight_problems(online=False)]
        cache.set("bc:dashboard:preflight", problems, READINESS_CACHE_SECONDS)
    from django.conf import settings

    mode = "live" if settings.STRIPE_LIVE_MODE else "test"
    stat = (Stat("Preflight", "GO", tone=OK, note=f"{mode} mode: nothing blocks")
            if not problems else
            Stat("Preflight", "NO GO", tone=BAD, note=f"{counted(len(problems), 'blocker')} in {mode} mode"))
    from billing_console.stripe.switch import checkout_is_open

    sales = (Stat("Sales", "Open", tone=OK, url=_switch_url()) if checkout_is_open() else
             Stat("Sales", "Paused", tone=WARN, url=_switch_url(), note="checkout closed: the pricing page says so"))
    return Section("Readiness", [stat, sales], order=10,
                   rows=[Stat(message, pid, tone=BAD) for pid, message in problems[:8]],
                   note="manage.py preflight lists the same checks, and Stripe's webhook endpoint.")


LATE_AFTER_MINUTES = 15  # a cron this far past its due time did not start: the cluster is down or stuck


def _switch_url() -> str:
    try:
        return reverse("admin:billing_console_checkoutswitch_changelist")
    except NoReverseMatch:
        return ""


def crons_section(request) -> Section:
    """The last run of every scheduled cron: one query whatever the history."""
    from croniter import croniter
    from django_q.models import Schedule

    from billing_console.models import CronRun
    from billing_console.ops.schedules import SCHEDULES

    newest = (CronRun.objects.filter(name=OuterRef("name")).exclude(status=CronRun.Status.SKIPPED)
              .order_by("-started_at").values("pk")[:1])
    names = [c.name for c in SCHEDULES]
    runs = {r.name: r for r in CronRun.objects.filter(name__in=names, pk=Subquery(newest))}
    # django-q2 sets a new cron schedule's next_run from its expression at creation: its first due time.
    first_due = dict(Schedule.objects.filter(name__in=names).values_list("name", "next_run"))
    now = timezone.now()
    rows, late, failing = [], 0, 0
    for cron in SCHEDULES:
        run = runs.get(cron.name)
        url = changelist_url(request, "billing_console", "cronrun", name=cron.name)
        if cron.name == "heartbeat":  # records no CronRun: its one row's age is the cluster's pulse
            from billing_console.ops.heartbeat import cluster_state

            cluster = cluster_state(now=now)["cluster"]
            if cluster["heartbeatAt"]:
                running = cluster["state"] == "running"
                late += not running
                rows.append(Stat(cron.name, cluster["state"], tone=OK if running else WARN,
                                 note=f"{cluster['heartbeatAgeSeconds']} s ago"))
                continue
            # No beat yet (a fresh install): judged like any cron that never ran, by its first due time.
        if run is None:
            if cron.name not in first_due:
                rows.append(Stat(cron.name, "not scheduled", url=url, tone=WARN,
                                 note="run manage.py setup_schedules"))
                late += 1
                continue
            due = first_due[cron.name] or croniter(cron.cron, now).get_next(type(now))
            overdue = now > due + timedelta(minutes=LATE_AFTER_MINUTES)
            late += overdue
            when = timezone.localtime(due).strftime("%Y-%m-%d %H:%M")
            rows.append(Stat(cron.name, "never ran", url=url, tone=WARN if overdue else IDLE,
                             note=f"late: first run was due {when} UTC" if overdue else f"first run due {when} UTC"))
            continue
        due = croniter(cron.cron, run.started_at).get_next(type(now))
        is_late = now > due + timedelta(minutes=LATE_AFTER_MINUTES)
        tone = {CronRun.Status.OK: OK, CronRun.Status.RUNNING: IDLE}.get(run.status, BAD)
        if is_late:
            tone, late = WARN if tone == OK else tone, late + 1
        failing += tone == BAD
        when = timezone.localtime(run.started_at).strftime("%Y-%m-%d %H:%M")
        note = f"{when} UTC" + (" - late: next run was due" if is_late else "")
        rows.append(Stat(cron.name, run.get_status_display(), url=url, tone=tone, note=note))
    stats = [
        Stat("Crons failing", failing, url=changelist_url(request, "billing_console", "cronrun", status__exact="errors"),
             tone=BAD if failing else OK),
        Stat("Late or never ran", late, tone=WARN if late else OK),
    ]
    return Section("Crons", stats, order=20, rows=rows)


def webhooks_section(request) -> Section:
    from billing_console.models import WebhookEvent

    stuck_before = timezone.now() - timedelta(minutes=10)
    # Filtered first so the status index answers, not a scan of every event ever received.
    counts = WebhookEvent.objects.filter(status__in=[WebhookEvent.Status.FAILED, WebhookEvent.Status.RECEIVED, WebhookEvent.Status.PROCESSING]).aggregate(
        failed=Count("id", filter=Q(status=WebhookEvent.Status.FAILED)),
        waiting=Count("id", filter=Q(status__in=[WebhookEvent.Status.RECEIVED, WebhookEvent.Status.PROCESSING], received_at__lt=stuck_before)),
    )
    return Section("Stripe events", [
        Stat("Failed", counts["failed"], tone=BAD if counts["failed"] else OK,
             url=changelist_url(request, "billing_console", "webhookevent", status__exact=WebhookEvent.Status.FAILED),
             note="replay them from the list"),
        Stat("Waiting over 10 min", counts["waiting"], tone=WARN if counts["waiting"] else OK,
             url=changelist_url(request, "billing_console", "webhookevent", status__exact=WebhookEvent.Status.RECEIVED)),
    ], order=30)


def checkouts_section(request) -> Section:
    from billing_console.models import CheckoutAttempt

    since = timezone.now() - timedelta(days=7)
    counts = CheckoutAttempt.objects.filter(created_at__gte=since).aggregate(
        abandoned=Count("id", filter=Q(status=CheckoutAttempt.Status.ABANDONED)), paid=Count("id", filter=Q(status=CheckoutAttempt.Status.PAID)))
    since_param = since.replace(microsecond=0).isoformat()  # with its UTC offset: an aware filter
    return Section("Checkouts, last 7 days", [
        Stat("Paid", counts["paid"], tone=OK if counts["paid"] else IDLE,
             url=changelist_url(request, "billing_console", "checkoutattempt", status__exact=CheckoutAttempt.Status.PAID,
                                created_at__gte=since_param)),
        Stat("Abandoned", counts["abandoned"], tone=WARN if counts["abandoned"] else OK,
             url=changelist_url(request, "billing_console", "checkoutattempt", status__exact=CheckoutAttempt.Status.ABANDONED,
                                created_at__gte=since_param)),
    ], order=40)


def reconciliation_section(request) -> Section:
    from billing_console.models import DriftItem, ReconciliationRun

    last = ReconciliationRun.objects.only("started_at", "status", "drift_count").first()
    open_items = DriftItem.objects.filter(resolution=DriftItem.Resolution.OPEN).count()
    if last is None:
        run = Stat("Last run", "never", tone=WARN, url=changelist_url(request, "billing_console", "reconciliationrun"))
    else:
        tone = {ReconciliationRun.Status.CLEAN: OK, ReconciliationRun.Status.RUNNING: IDLE}.get(last.status, BAD)
        run = Stat("Last run", last.get_status_display(), tone=tone,
                   url=changelist_url(request, "billing_console", "reconciliationrun"),
                   note=f"{timezone.localtime(last.started_at):%Y-%m-%d %H:%M} UTC")
    drift = Stat("Open drift items", open_items, tone=BAD if open_items else OK,
                 url=changelist_url(request, "billing_console", "driftitem", resolution__exact=DriftItem.Resolution.OPEN))
    return Section("Reconciliation", [run, drift], order=60)


_CORE = [readiness_section, crons_section, webhooks_section, checkouts_section, reconciliation_section]
