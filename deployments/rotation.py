"""Token rotation deadline (master key leaked): notify_token_rotation sets a date on the customer's deployments
(through the core's listener registry, see apps.py); past it, the deployment pauses with ROTATION_OVERDUE until
the customer rotates the token (deployment_rotate_token clears both)."""
from __future__ import annotations

import logging

from django.db import transaction
from django.db.models import Q
from django.utils import timezone

from billing_console.models import Customer
from billing_console.services import audit_log
from deployments.models import Deployment
from deployments.services import ACTOR_CRON, PausedBy, deployment_pause

log = logging.getLogger("deployments")


ROTATION_REASON = "The Cloudflare API token was not rotated by {due:%Y-%m-%d}; rotating it resumes updates."


def deployments_request_rotation(*, customer: Customer, due_at, asked_at, campaign: str) -> int:
    """The customer was asked to rotate: every deployment whose token predates the request must be rotated
    by `due_at`. An earlier deadline already set is kept. Returns how many deployments got one."""
    with transaction.atomic():
        qs = (Deployment.objects.select_for_update().filter(customer=customer, rotation_due_at__isnull=True)
              .filter(Q(token_set_at__isnull=True) | Q(token_set_at__lt=asked_at)))
        count = 0
        for d in qs:
            d.rotation_due_at = due_at
            d.save(update_fields=["rotation_due_at", "updated_at"])
            audit_log(actor_type=ACTOR_CRON, actor="notify_token_rotation", action="deployment.rotation_requested",
                      target=d, customer=customer, data={"due_at": due_at.isoformat(), "campaign": campaign})
            count += 1
    return count


def deployments_enforce_rotation_deadline(*, now=None, actor: str = "enforce_token_rotation") -> dict[str, int]:
    """Pause every deployment past its rotation deadline (ROTATION_OVERDUE); rotating the token resumes it."""
    now = now or timezone.now()
    counts = {"paused": 0, "pending": 0}
    overdue = Deployment.objects.filter(rotation_due_at__lte=now).exclude(paused=True, paused_by=PausedBy.ROTATION_OVERDUE)
    for d in overdue.select_related("customer").iterator():
        before = d.paused
        d = deployment_pause(deployment=d, actor_type=ACTOR_CRON, actor=actor, by=PausedBy.ROTATION_OVERDUE,
                             reason=ROTATION_REASON.format(due=d.rotation_due_at))
        if not before and d.paused:
            counts["paused"] += 1
    counts["pending"] = Deployment.objects.filter(rotation_due_at__isnull=False).count()
    if counts["paused"]:
        log.info("rotation deadline: %s", counts, extra={"event": "rotation_deadline_enforced", "counts": counts})
    return counts
