"""django-q2 entry points: take ids, call a service."""
from __future__ import annotations

from billing_console.services import cron_guard
from deployments.push import deployments_push, publish_execute
from deployments.rotation import deployments_enforce_rotation_deadline
from deployments.selectors import PUSH_CRON


def push_deployments() -> dict | None:
    """The hourly push (schedule "push_deployments"). None when another run still holds the cron."""
    with cron_guard(PUSH_CRON) as run:
        if run is None:
            return None
        report = deployments_push()
        run.counts = dict(report.counts)
        run.error_summary = report.summary
    return dict(report.counts)


def publish_run(publish_id: int) -> dict:
    """One queued publish (push now, requeue, rollback), queued by the service after its commit."""
    return dict(publish_execute(publish_id=publish_id).counts)


def enforce_token_rotation() -> dict | None:
    """Schedule "enforce_token_rotation": pause deployments past their token rotation deadline."""
    with cron_guard("enforce_token_rotation") as run:
        if run is None:
            return None
        counts = deployments_enforce_rotation_deadline()
        run.counts = counts
    return counts
