"""Signed manage links: `/manage/<token>/` reaches one customer's page without a password.

The token is `<customer pk>:<timestamp>:<signature>` signed with SECRET_KEY and a salt that includes
the customer's `manage_salt`, so rotating that salt (admin "revoke manage links") invalidates every
link already sent. Links expire after MANAGE_LINK_MAX_AGE_DAYS.
"""
from __future__ import annotations

from datetime import timedelta

from django.conf import settings
from django.core import signing
from django.core.mail import EmailMultiAlternatives
from django.db import transaction
from django.db.models import F
from django.template.loader import render_to_string
from django.utils import timezone
from django_q.tasks import async_task

from billing_console.errors import ServiceError
from billing_console.models import AuditEvent, Customer, ManageLinkDelivery
from billing_console.services import audit_log


class ManageLinkInvalid(Exception):
    """Unknown, tampered, expired or revoked link. Callers answer the same way for all of them."""


def _signer(customer: Customer) -> signing.TimestampSigner:
    return signing.TimestampSigner(salt=f"billing_console.manage_link:{customer.manage_salt}")


def manage_link_token(customer: Customer) -> str:
    return _signer(customer).sign(str(customer.pk))


def manage_link_make(customer: Customer) -> str:
    return f"{settings.SITE_URL}/manage/{manage_link_token(customer)}/"


def manage_link_read(token: str) -> Customer:
    pk, _, _ = (token or "").partition(":")
    if not (pk.isascii() and pk.isdigit()) or len(token) > 200:  # isdigit alone accepts "²"
        raise ManageLinkInvalid("Malformed link.")
    customer = Customer.objects.filter(pk=int(pk)).first()
    if customer is None:
        raise ManageLinkInvalid("Unknown link.")
    try:
        value = _signer(customer).unsign(token, max_age=settings.MANAGE_LINK_MAX_AGE_DAYS * 86400)
    except signing.SignatureExpired as exc:
        raise ManageLinkInvalid("This link has expired.") from exc
    except signing.BadSignature as exc:
        raise ManageLinkInvalid("This link is not valid (it may have been revoked).") from exc
    if value != str(customer.pk):
        raise ManageLinkInvalid("Unknown link.")
    return customer


# --- Delivery ----------------------------------------------------------------------------------------
# Each request is a ManageLinkDelivery row made in the caller's transaction; the send runs after commit in a
# django-q2 task and, when it fails, again from the "manage_link_delivery_retry" cron with doubling waits.
DELIVER_TASK = "billing_console.stripe.tasks.manage_link_deliver"
REASONS = ("checkout", "subscription", "recover", "support")


def manage_link_delivery_request(*, customer: Customer, reason: str, actor_type: str, actor: str = "",
                                 enqueue: bool = True) -> ManageLinkDelivery:
    """Queue an email of a fresh manage link to the customer. Audited; the send happens after commit (in a task,
    or by a caller that is already in one and passes enqueue=False, then calls manage_link_deliver)."""
    if reason not in REASONS:
        raise ServiceError("invalid", f"Unknown manage link reason {reason!r}.")
    with transaction.atomic():
        delivery = ManageLinkDelivery.objects.create(customer=customer, reason=reason, next_attempt_at=timezone.now(),
                                                     requested_by=f"{actor_type}:{actor}"[:255])
        audit_log(actor_type=actor_type, actor=actor, action="customer.manage_link_requested", target=customer,
                  data={"reason": reason, "delivery": delivery.pk})
        if enqueue:
            # robust: if the queue is unreachable the row stays due and the retry cron sends it.
            transaction.on_commit(lambda: _enqueue(delivery.pk), robust=True)
    return delivery


def _enqueue(delivery_id: int) -> None:

    async_task(DELIVER_TASK, delivery_id, task_name=f"manage-link-{delivery_id}")


def manage_link_retry_delay(attempts: int) -> timedelta:
    base = settings.MANAGE_LINK_DELIVERY_RETRY_BASE_SECONDS
    return timedelta(seconds=min(base * 2 ** max(attempts - 1, 0), settings.MANAGE_LINK_DELIVERY_RETRY_MAX_SECONDS))


def manage_link_deliver(*, delivery_id: int) -> ManageLinkDelivery | None:
    """Send one queued manage-link email. Returns the delivery, or None when it is not due or another worker
    holds it. A failure schedules a retry (or, after MANAGE_LINK_DELIVERY_MAX_ATTEMPTS, gives up)."""
    now = timezone.now()
    lease = now + timedelta(seconds=settings.MANAGE_LINK_DELIVERY_LEASE_SECONDS)
    S = ManageLinkDelivery.Status
    claimed = ManageLinkDelivery.objects.filter(pk=delivery_id, status=S.PENDING, next_attempt_at__lte=now).update(
        next_attempt_at=lease, attempts=F("attempts") + 1, updated_at=now)
    if not claimed:
        return None
    delivery = ManageLinkDelivery.objects.select_related("customer").get(pk=delivery_id)
    customer = delivery.customer
    from billing_console.wording.subscription import subscription_copy

    context = {"customer": customer, "manage_url": manage_link_make(customer), "reason": delivery.reason,
               "copy": subscription_copy(customer),
               "plan_name": settings.PLANS.get(customer.plan, {}).get("name", customer.plan),
               "max_age_days": settings.MANAGE_LINK_MAX_AGE_DAYS}
    try:
        message = EmailMultiAlternatives(render_to_string("emails/manage_link_subject.txt", context).strip(),
                                         render_to_string("emails/manage_link.txt", context),
                                         settings.DEFAULT_FROM_EMAIL, [customer.email],
                                         reply_to=[settings.SUPPORT_EMAIL] if settings.SUPPORT_EMAIL else None)
        message.attach_alternative(render_to_string("emails/manage_link.html", context), "text/html")
        message.send()
    except Exception as exc:  # any transport error: recorded and retried, never lost in a failed task
        error = f"{type(exc).__name__}: {exc}"[:500]
        with transaction.atomic():
            if delivery.attempts >= settings.MANAGE_LINK_DELIVERY_MAX_ATTEMPTS:
                delivery.status, delivery.next_attempt_at = S.FAILED, None
                audit_log(actor_type=AuditEvent.ActorType.SYSTEM, actor="email", action="customer.manage_link_failed",
                          target=customer, data={"delivery": delivery.pk, "attempts": delivery.attempts,
                                                 "error": type(exc).__name__})
            else:
                delivery.next_attempt_at = timezone.now() + manage_link_retry_delay(delivery.attempts)
            delivery.last_error = error
            delivery.save(update_fields=["status", "next_attempt_at", "last_error", "updated_at"])
        return delivery
    with transaction.atomic():
        delivery.status, delivery.sent_at, delivery.next_attempt_at, delivery.last_error = S.SENT, timezone.now(), None, ""
        delivery.save(update_fields=["status", "sent_at", "next_attempt_at", "last_error", "updated_at"])
        audit_log(actor_type=AuditEvent.ActorType.SYSTEM, actor="email", action="customer.manage_link_emailed",
                  target=customer, data={"reason": delivery.reason, "delivery": delivery.pk,
                                         "attempts": delivery.attempts})
    return delivery


def manage_link_deliver_due(*, limit: int = 200) -> dict:
    """The retry cron: send every manage-link email whose (re)try time has come."""
    S = ManageLinkDelivery.Status
    ids = list(ManageLinkDelivery.objects.filter(status=S.PENDING, next_attempt_at__lte=timezone.now())
               .order_by("next_attempt_at").values_list("pk", flat=True)[:limit])
    counts = {"due": len(ids), "sent": 0, "retrying": 0, "failed": 0, "skipped": 0}
    for delivery_id in ids:
        delivery = manage_link_deliver(delivery_id=delivery_id)
        key = "skipped" if delivery is None else {S.SENT: "sent", S.FAILED: "failed"}.get(delivery.status, "retrying")
        counts[key] += 1
    return counts
