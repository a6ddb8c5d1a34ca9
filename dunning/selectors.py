"""Dunning reads shared by the admin and the customer page."""
from __future__ import annotations

from django.db.models import Count, Min, Q, QuerySet

from dunning.models import DunningCase, DunningStepLog


def dunning_cases_for_admin() -> QuerySet[DunningCase]:
    """Cases with what the changelist shows, in one query (customer, policy, step counts)."""
    return DunningCase.objects.select_related("customer", "policy").annotate(
        steps_sent=Count("step_logs", filter=Q(step_logs__status=DunningStepLog.Status.SENT)),
        steps_failed=Count("step_logs", filter=Q(step_logs__status=DunningStepLog.Status.FAILED)),
    )


def dunning_ops_section(*, now=None) -> dict:
    """The dunning part of /api/ops/summary: cases, the send backlog, sends in the last 24 h, problems."""
    from datetime import timedelta

    from django.utils import timezone

    now = now or timezone.now()
    since = now - timedelta(hours=24)
    cases = dict(DunningCase.objects.filter(status__in=DunningCase.ACTIVE).values_list("status").annotate(n=Count("id")))
    L = DunningStepLog
    due = L.objects.filter(status=L.Status.QUEUED, due_at__lte=now).filter(
        Q(next_retry_at__isnull=True) | Q(next_retry_at__lte=now))
    backlog = due.aggregate(n=Count("id"), oldest=Min("due_at"))
    recent = (L.objects.filter(updated_at__gte=since, status__in=[L.Status.SENT, L.Status.FAILED])
              .values_list("channel", "status").annotate(n=Count("id")))
    per_channel = {"email": {"sent": 0, "failed": 0}, "whatsapp": {"sent": 0, "failed": 0}}
    for channel, status, n in recent:
        per_channel.setdefault(channel, {"sent": 0, "failed": 0})[status] = n
    problems = []
    failed = sum(c["failed"] for c in per_channel.values())
    if failed:
        problems.append(f"{failed} dunning step(s) failed in the last 24 h (admin: Dunning step logs, status failed).")
    if backlog["oldest"] and now - backlog["oldest"] > timedelta(hours=1):
        problems.append(f"{backlog['n']} dunning step(s) due and unsent; the oldest since {backlog['oldest']:%Y-%m-%d %H:%M} UTC.")
    return {
        "openCases": cases.get(DunningCase.Status.OPEN, 0),
        "exhaustedCases": cases.get(DunningCase.Status.EXHAUSTED, 0),
        "backlog": backlog["n"],
        "oldestDueAt": backlog["oldest"].isoformat() if backlog["oldest"] else None,
        "emails24h": per_channel["email"],
        "whatsapp24h": per_channel["whatsapp"],
        "problems": problems,
    }
