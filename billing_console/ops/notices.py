"""Operator-initiated emails to customers (account restored, rotate your token), each with a fresh
manage link. Sent at most once per customer and campaign: a claim is audited before the send and
the outcome after, so a rerun after a crash skips whoever was already claimed."""
from __future__ import annotations

import logging
from datetime import timedelta
from typing import Callable

from django.conf import settings
from django.core.mail import EmailMultiAlternatives
from django.db import transaction
from django.template.loader import render_to_string
from django.utils import timezone

from billing_console.manage_links import manage_link_make
from billing_console.models import AuditEvent, Customer
from billing_console.services import audit_log

log = logging.getLogger("billing_console.notices")

CLAIMED = "customer.notice_claimed"
SENT = "customer.notice_sent"
FAILED = "customer.notice_failed"


def notice_already_claimed(*, customer: Customer, campaign: str) -> bool:
    events = AuditEvent.objects.filter(customer=customer, target_type=Customer._meta.label_lower,
                                       target_id=str(customer.pk), data__campaign=campaign)
    # A claim whose send failed may be tried again; a claim that succeeded or never reported may not.
    return events.filter(action=CLAIMED).count() > events.filter(action=FAILED).count()


def customer_notice_send(*, customer: Customer, template: str, campaign: str, actor: str,
                         context: dict | None = None) -> str:
    """Email `templates/emails/<template>*` with a fresh manage link. Returns "sent", "failed" or "skipped"."""
    with transaction.atomic():
        customer = Customer.objects.select_for_update().get(pk=customer.pk)
        if notice_already_claimed(customer=customer, campaign=campaign):
            return "skipped"
        audit_log(actor_type=AuditEvent.ActorType.SYSTEM, actor=actor, action=CLAIMED, target=customer,
                  data={"campaign": campaign, "template": template})
    body = {"customer": customer, "manage_url": manage_link_make(customer),
            "max_age_days": settings.MANAGE_LINK_MAX_AGE_DAYS, **(context or {})}
    try:
        subject = render_to_string(f"emails/{template}_subject.txt", body).strip()
        message = EmailMultiAlternatives(subject, render_to_string(f"emails/{template}.txt", body),
                                         settings.DEFAULT_FROM_EMAIL, [customer.email],
                                         reply_to=[settings.SUPPORT_EMAIL] if settings.SUPPORT_EMAIL else None)
        message.attach_alternative(render_to_string(f"emails/{template}.html", body), "text/html")
        message.send()
    except Exception as exc:
        with transaction.atomic():
            audit_log(actor_type=AuditEvent.ActorType.SYSTEM, actor=actor, action=FAILED, target=customer,
                      data={"campaign": campaign, "error": type(exc).__name__})
        log.warning("notice %s to customer %s failed: %s", campaign, customer.pk, type(exc).__name__,
                    extra={"event": "notice_failed", "campaign": campaign, "customer": customer.pk})
        return "failed"
    with transaction.atomic():
        audit_log(actor_type=AuditEvent.ActorType.SYSTEM, actor=actor, action=SENT, target=customer,
                  data={"campaign": campaign, **({"due_at": context["due_at"].isoformat()}
                                                 if context and context.get("due_at") else {})})
    log.info("notice %s sent to customer %s", campaign, customer.pk,
             extra={"event": "notice_sent", "campaign": campaign, "customer": customer.pk})
    return "sent"


# --- Master key leaked: ask every customer whose cloud token the console holds to rotate it ----------
TOKEN_ROTATION_TEMPLATE = "ops_rotate_token"


def token_holder_customers():
    """Customers with a row that keeps a vault secret for them in an app (the deployments' cloud
    tokens), found through the vault's registry so the core imports no app."""
    from django.db.models import Q

    from billing_console.vault import encrypted_columns

    query = Q(pk__in=[])
    for model, _column in encrypted_columns():
        if model._meta.app_label == "billing_console":
            continue  # the core's own secrets (recovery emails) are not something a customer rotates
        for f in model._meta.concrete_fields:
            if f.is_relation and f.related_model is Customer:
                query |= Q(pk__in=model._base_manager.values(f.attname))
    return Customer.objects.filter(query).order_by("pk")


# Apps that hold the tokens set the deadline on their rows (deployments registers from its AppConfig.ready()):
# fn(customer=, due_at=, asked_at=, campaign=), called after the email went out.
RotationListener = Callable[..., object]
_rotation_listeners: list[RotationListener] = []


def register_token_rotation_listener(fn: RotationListener) -> RotationListener:
    if fn not in _rotation_listeners:
        _rotation_listeners.append(fn)
    return fn


def customers_notify_token_rotation(*, dry_run: bool = False, now=None) -> dict[str, int]:
    """Email each token holder once per master key (campaign = the key id now in use): the runbook's
    step after rotate_master_key. A rerun only reaches those not reached yet. The email names the
    deadline (TOKEN_ROTATION_DEADLINE_DAYS from the send), and the listeners record it on the rows."""
    from billing_console.vault import Keyring

    campaign = f"token_rotation:{Keyring.from_settings().current.kid}"
    counts = {"customers": 0, "sent": 0, "failed": 0, "skipped": 0, "would_send": 0}
    for customer in token_holder_customers().iterator():
        counts["customers"] += 1
        if dry_run:
            counts["skipped" if notice_already_claimed(customer=customer, campaign=campaign) else "would_send"] += 1
            continue
        asked_at = now or timezone.now()
        due_at = asked_at + timedelta(days=settings.TOKEN_ROTATION_DEADLINE_DAYS)
        outcome = customer_notice_send(customer=customer, template=TOKEN_ROTATION_TEMPLATE, campaign=campaign,
                                       actor="notify_token_rotation", context={"due_at": due_at})
        counts[outcome] += 1
        if outcome == "sent":
            for listener in _rotation_listeners:
                listener(customer=customer, due_at=due_at, asked_at=asked_at, campaign=campaign)
    log.info("token rotation notices: %s", counts, extra={"event": "token_rotation_notified", "dry_run": dry_run, "counts": counts})
    return counts
