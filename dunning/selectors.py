"""Dunning reads shared by the admin and the customer page."""
from __future__ import annotations

from datetime import datetime, timezone as dt_timezone

from django.db.models import Count, Q, QuerySet

from dunning.models import Channel, DunningCase, DunningStep, DunningStepLog
from billing_console.wording import counted


def dunning_cases_for_admin() -> QuerySet[DunningCase]:
    """Cases with what the changelist shows, in one query (customer, policy, step counts)."""
    return DunningCase.objects.select_related("customer", "policy").annotate(
        steps_sent=Count("step_logs", filter=Q(step_logs__status=DunningStepLog.Status.SENT)),
        steps_failed=Count("step_logs", filter=Q(step_logs__status=DunningStepLog.Status.FAILED)),
    )


def dunning_ops_section(*, now=None) -> dict:
    """The dunning part of /api/ops/summary: cases, the send backlog, sends in the last 24 h, problems.
    One statement (the summary's budget is one per app section)."""
    from datetime import timedelta

    from django.db import connection
    from django.utils import timezone

    now = now or timezone.now()
    since = now - timedelta(hours=24)
    L, C = DunningStepLog, DunningCase
    due = "status = %s AND due_at <= %s AND (next_retry_at IS NULL OR next_retry_at <= %s)"
    sent_or_failed = "channel = %s AND status = %s AND updated_at >= %s"
    sql = (f"SELECT (SELECT COUNT(*) FROM {C._meta.db_table} WHERE status = %s), "
           f"(SELECT COUNT(*) FROM {C._meta.db_table} WHERE status = %s), "
           f"COUNT(*) FILTER (WHERE {due}), MIN(due_at) FILTER (WHERE {due}), "
           + ", ".join([f"COUNT(*) FILTER (WHERE {sent_or_failed})"] * 4)
           + f" FROM {L._meta.db_table}")
    params = [C.Status.OPEN, C.Status.EXHAUSTED, *[L.Status.QUEUED, now, now] * 2]
    for channel in ("email", "whatsapp"):
        for status in (L.Status.SENT, L.Status.FAILED):
            params += [channel, status, since]
    with connection.cursor() as cursor:
        cursor.execute(sql, params)
        open_cases, exhausted, backlog, oldest, email_sent, email_failed, wa_sent, wa_failed = cursor.fetchone()
    if isinstance(oldest, str):  # SQLite answers text
        oldest = datetime.fromisoformat(oldest)
    if oldest is not None and timezone.is_naive(oldest):
        oldest = timezone.make_aware(oldest, dt_timezone.utc)
    problems = []
    if email_failed + wa_failed:
        problems.append(f"{counted(email_failed + wa_failed, 'dunning step')} failed in the last 24 h "
                        "(admin: Dunning step logs, status failed).")
    if oldest and now - oldest > timedelta(hours=1):
        problems.append(f"{counted(backlog, 'dunning step')} due and unsent; the oldest since {oldest:%Y-%m-%d %H:%M} UTC.")
    return {
        "openCases": open_cases,
        "exhaustedCases": exhausted,
        "backlog": backlog,
        "oldestDueAt": oldest.isoformat() if oldest else None,
        "emails24h": {"sent": email_sent, "failed": email_failed},
        "whatsapp24h": {"sent": wa_sent, "failed": wa_failed},
        "problems": problems,
    }


def whatsapp_steps_exist() -> bool:
    """Some dunning policy has a step on the WhatsApp channel."""
    return DunningStep.objects.filter(channel=Channel.WHATSAPP).exists()
