"""The task cluster's heartbeat: the `heartbeat` cron (every minute) updates one row, so the row's age is
how long the cluster has not executed a task. /health reports it; /health?deep=1 answers 503 once it is
older than HEARTBEAT_STALE_SECONDS, which an external uptime monitor turns into a page (a dead cluster
cannot send its own alerts).
"""
from __future__ import annotations

from datetime import datetime

from django.conf import settings
from django.db.models import F, Min
from django.utils import timezone

from billing_console.models import Heartbeat, WebhookEvent

CLUSTER = "qcluster"
UNAPPLIED = (WebhookEvent.Status.RECEIVED, WebhookEvent.Status.PROCESSING, WebhookEvent.Status.FAILED)


def heartbeat_record(*, name: str = CLUSTER, now: datetime | None = None) -> None:
    """One UPDATE (an INSERT the first time); no CronRun row, it would add 1,440 rows a day."""
    now = now or timezone.now()
    if not Heartbeat.objects.filter(name=name).update(at=now, beats=F("beats") + 1):
        Heartbeat.objects.get_or_create(name=name, defaults={"at": now, "beats": 1})


def heartbeat_cron() -> None:
    """django-q2 entry point of the `heartbeat` cron: its run is the proof that the cluster executes tasks."""
    heartbeat_record()


def _age(at: datetime | None, now: datetime) -> int | None:
    return None if at is None else max(int((now - at).total_seconds()), 0)


def cluster_state(*, now: datetime | None = None) -> dict:
    """Two indexed reads: the heartbeat row and the oldest event not yet applied."""
    now = now or timezone.now()
    beat = Heartbeat.objects.filter(name=CLUSTER).values_list("at", flat=True).first()
    age = _age(beat, now)
    stale_after = settings.HEARTBEAT_STALE_SECONDS
    state = "never" if age is None else "stale" if age > stale_after else "running"
    oldest = WebhookEvent.objects.filter(status__in=UNAPPLIED).aggregate(at=Min("received_at"))["at"]
    return {
        "cluster": {"state": state, "heartbeatAt": beat.isoformat() if beat else None,
                    "heartbeatAgeSeconds": age, "staleAfterSeconds": stale_after},
        "stripeEvents": {"oldestUnappliedAgeSeconds": _age(oldest, now)},
    }


def cluster_stats() -> list[dict]:
    """django-q2's own view of the running clusters (deep check only: it reads the broker)."""
    from django_q.status import Stat

    return [{"host": s.host, "status": s.status, "workers": len(s.workers or []),
             "uptimeSeconds": int(s.uptime() or 0)} for s in Stat.get_all()]
