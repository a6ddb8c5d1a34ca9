"""Dunning reads shared by the admin and the customer page."""
from __future__ import annotations

from django.db.models import Count, Q, QuerySet

from dunning.models import DunningCase, DunningStepLog


def dunning_cases_for_admin() -> QuerySet[DunningCase]:
    """Cases with what the changelist shows, in one query (customer, policy, step counts)."""
    return DunningCase.objects.select_related("customer", "policy").annotate(
        steps_sent=Count("step_logs", filter=Q(step_logs__status=DunningStepLog.Status.SENT)),
        steps_failed=Count("step_logs", filter=Q(step_logs__status=DunningStepLog.Status.FAILED)),
    )
