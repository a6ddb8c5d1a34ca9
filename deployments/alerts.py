"""This app's alert_check provider (registered from DeploymentsConfig.ready()): a spike of failed pushes."""
from datetime import timedelta

from django.conf import settings

from billing_console.ops.alerts import Problem
from deployments.models import PublishVersion


def push_failure_problems(now):
    window = settings.ALERT_SPIKE_WINDOW_MINUTES
    failed = PublishVersion.objects.filter(status=PublishVersion.Status.FAILED,
                                           completed_at__gte=now - timedelta(minutes=window)).count()
    if failed >= settings.ALERT_PUSH_FAILURES:
        return [Problem("push_failures_spike", f"{failed} deployment pushes failed in the last {window} minutes.",
                        runbook="Push failures spike")]
    return []
