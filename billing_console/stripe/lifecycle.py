"""The subscription's life beyond checkout and renewal, as Stripe's events tell it.

- Subscriptions from anywhere (Dashboard, API, a sales call): a subscription event whose customer the
  console does not know links or creates one by Stripe id, else by email, as a checkout does. Reading
  Stripe's customer (for the email) happens in a preparer, before the event's transaction. No email:
  an UnlinkedSubscription row for support, never a failed event.
- Emails the customer must get: trial ending, subscription ended, payment needs authentication.
- Refunds and disputes recorded where the customer page, invoices and audit show them (discounts:
  discounts.py).

Every receiver reads the payload defensively: a field Stripe left out is logged and skipped.
"""
from __future__ import annotations

import logging
from datetime import datetime

from django.conf import settings
from django.db import transaction
from django.db.models import Q
from django.utils import timezone

from billing_console.models import AuditEvent, CheckoutAttempt, Customer, Dispute, Invoice, UnlinkedSubscription
from billing_console.errors import ServiceError
from billing_console.manage_links import manage_link_delivery_request
from billing_console.selectors import customer_by_stripe_keys
from billing_console.services import audit_log
from billing_console.stripe import gateway as stripe_gateway
from billing_console.stripe import objects as so
from billing_console.stripe.dispatch import PREPARED_KEY
from billing_console.stripe.statuses import ENDED as ENDED_STATUSES
from billing_console.stripe.statuses import SubscriptionStatus

log = logging.getLogger("billing_console.stripe")

STRIPE = AuditEvent.ActorType.STRIPE
EMAIL_TASK = "billing_console.stripe.tasks.customer_lifecycle_email_send"


# --- Finding the customer ------------------------------------------------------------------------
def _attempt_for(subscription: dict) -> CheckoutAttempt | None:
    token = so.checkout_token(subscription)
    return CheckoutAttempt.objects.filter(token=token).first() if token else None


def subscription_customer_prepare(event: dict) -> dict:
    """Before the transaction: when nothing in the console names this subscription's customer, read
    Stripe's customer for its email. A deleted customer reads as {} (no email)."""
    sub = so.event_object(event)
    if not isinstance(sub, dict) or not sub.get("id"):
        return {}
    stripe_customer_id = so.subscription_customer_id(sub)
    if isinstance(sub.get("customer"), dict) or not stripe_customer_id.startswith("cus_"):
        return {}
    if customer_by_stripe_keys(subscription_id=sub["id"], stripe_customer_id=stripe_customer_id) is not None:
        return {}
    if _attempt_for(sub) is not None:
        return {}
    try:
        stripe_customer = stripe_gateway.customer_retrieve(stripe_customer_id)
    except stripe_gateway.StripeGatewayError as exc:
        if exc.retryable:
            raise  # Stripe is unreachable: the event fails and is retried with backoff
        log.warning("subscription %s: Stripe customer %s not readable (%s)", sub["id"], stripe_customer_id, exc.code)
        stripe_customer = {}
    return {"stripe_customer": dict(stripe_customer or {})}


def _stripe_customer_of(event: dict, sub: dict) -> dict:
    if isinstance(sub.get("customer"), dict):
        return sub["customer"]
    return (event.get(PREPARED_KEY) or {}).get("stripe_customer") or {}


# --- Subscriptions from anywhere -----------------------------------------------------------------
def subscription_event_receive(*, event: dict) -> Customer | None:
    """customer.subscription.* : apply the state to its console customer, linking or creating one for a
    subscription made outside Checkout; record it for support when its Stripe customer has no email."""
    from billing_console.stripe.discounts import subscription_with_prepared_discounts
    from billing_console.stripe.subscriptions import (customer_apply_subscription, subscription_customer_ensure,
                                                      customer_link_stripe)

    sub = so.event_object(event)
    if not isinstance(sub, dict) or not isinstance(sub.get("id"), str) or not sub["id"]:
        log.warning("subscription event %s without a subscription id ignored", event.get("id"))
        return None
    sub = subscription_with_prepared_discounts(sub, event)  # coupons the preparer read for discounts named by id
    state_at = so.event_created(event)
    with transaction.atomic(savepoint=False):
        customer = subscription_customer_ensure(sub)
        from_outside = customer is None
        if customer is None and (sub.get("status") or "") in ENDED_STATUSES:
            log.info("subscription %s ended before the console knew it: no customer made", sub["id"])
            return None
        if customer is None:
            stripe_customer = _stripe_customer_of(event, sub)
            email = (stripe_customer.get("email") or "").strip().lower()
            if not email:
                unlinked_subscription_record(subscription=sub, state_at=state_at)
                return None
            customer = customer_link_stripe(stripe_customer_id=so.subscription_customer_id(sub), email=email,
                                            name=(stripe_customer.get("name") or "").strip(), actor="webhook")
        before_sub, before_status = customer.subscription_id, customer.subscription_status
        customer, applied = customer_apply_subscription(customer=customer, subscription=sub, state_at=state_at,
                                                        actor="webhook")
        if not applied:
            return customer
        status = customer.subscription_status
        if status == SubscriptionStatus.INCOMPLETE_EXPIRED:
            checkout_attempt_abandon_for_subscription(subscription=sub)
        newly_linked = before_sub != sub["id"]
        if newly_linked and from_outside and not so.checkout_token(sub) and status not in ENDED_STATUSES:
            # Checkout emails the manage link when it completes; a subscription from elsewhere gets it here.
            manage_link_delivery_request(customer=customer, reason="subscription", actor_type=STRIPE, actor="webhook")
        if status == SubscriptionStatus.CANCELED and not newly_linked and before_status != SubscriptionStatus.CANCELED:
            _email_on_commit(customer, "subscription_ended")
    return customer


def unlinked_subscription_record(*, subscription: dict, state_at: datetime | None) -> UnlinkedSubscription:
    """Keep (or update) the subscription nobody could be linked to, for support's list."""
    with transaction.atomic(savepoint=False):
        row, created = UnlinkedSubscription.objects.select_for_update().get_or_create(
            subscription_id=subscription["id"],
            defaults={"stripe_customer_id": so.subscription_customer_id(subscription)[:255]})
        if not created and row.state_at and state_at and state_at < row.state_at:
            return row
        row.status = (subscription.get("status") or "")[:32]
        row.price_id = so.subscription_price_id(subscription)[:255]
        row.data, row.state_at = subscription, state_at
        row.save()
        if created:
            audit_log(actor_type=STRIPE, actor="webhook", action="subscription.unlinked", target=row,
                      data={"subscription": row.subscription_id, "stripe_customer": row.stripe_customer_id})
            log.warning("subscription %s has a Stripe customer without email: listed for support",
                        row.subscription_id, extra={"event": "subscription_unlinked"})
    return row


def unlinked_subscription_link(*, unlinked: UnlinkedSubscription, email: str, actor: str) -> Customer:
    """Support's fix: link the subscription to the customer with this email (created if none), then apply
    its last known state as an event would, manage-link email included."""
    from django.core.exceptions import ValidationError
    from django.core.validators import validate_email

    from billing_console.stripe.subscriptions import customer_apply_subscription, customer_link_stripe

    email = (email or "").strip().lower() if isinstance(email, str) else ""
    try:
        validate_email(email)
    except ValidationError:
        raise ServiceError("invalid", fields={"email": "Enter a valid email address."}) from None
    staff = AuditEvent.ActorType.ADMIN
    with transaction.atomic():
        row = UnlinkedSubscription.objects.select_for_update().get(pk=unlinked.pk)
        if row.resolved_at:
            raise ServiceError("already_linked", "This subscription is already linked.")
        customer = customer_link_stripe(stripe_customer_id=row.stripe_customer_id, email=email, actor_type=staff,
                                        actor=actor)
        customer, _ = customer_apply_subscription(customer=customer, subscription=row.data, state_at=row.state_at,
                                                  actor_type=staff, actor=actor)
        row.customer, row.resolved_at, row.resolved_by = customer, timezone.now(), actor[:150]
        row.save(update_fields=["customer", "resolved_at", "resolved_by", "updated_at"])
        audit_log(actor_type=staff, actor=actor, action="subscription.linked_by_support", target=row,
                  customer=customer, data={"subscription": row.subscription_id})
        if customer.subscription_id == row.subscription_id and customer.subscription_status not in ENDED_STATUSES:
            # Every app's receivers (licence, deployment, dunning) see it as the subscription event they missed.
            from billing_console.stripe.dispatch import dispatch

            dispatch({"id": f"support-link-{row.pk}", "object": "event", "type": "customer.subscription.updated",
                      "created": int(row.state_at.timestamp()) if row.state_at else None,
                      "data": {"object": row.data}})
            manage_link_delivery_request(customer=customer, reason="subscription", actor_type=staff, actor=actor)
    return customer


def unlinked_subscription_link_from_customer(*, stripe_customer: dict) -> int:
    """customer.updated: a Stripe customer that now has an email resolves its unlinked subscriptions."""
    email = (stripe_customer.get("email") or "").strip()
    if not email or not stripe_customer.get("id"):
        return 0
    rows = list(UnlinkedSubscription.objects.filter(stripe_customer_id=stripe_customer["id"], resolved_at=None))
    for row in rows:
        unlinked_subscription_link(unlinked=row, email=email, actor="stripe:customer.updated")
    return len(rows)


def checkout_attempt_abandon_for_subscription(*, subscription: dict) -> CheckoutAttempt | None:
    """The first payment never completed (incomplete_expired): the checkout attempt behind it is abandoned."""
    token = so.checkout_token(subscription)
    if not token:
        return None
    attempt = CheckoutAttempt.objects.select_for_update().filter(token=token).first()
    if attempt is None or attempt.status == CheckoutAttempt.Status.ABANDONED:
        return attempt
    previous = attempt.status
    attempt.status, attempt.completed_at = CheckoutAttempt.Status.ABANDONED, timezone.now()
    attempt.save(update_fields=["status", "completed_at"])
    audit_log(actor_type=STRIPE, actor="webhook", action="checkout.abandoned", target=attempt,
              data={"from": previous, "subscription": subscription.get("id"), "why": SubscriptionStatus.INCOMPLETE_EXPIRED.value})
    return attempt


# --- Emails -----------------------------------------------------------------------------------------
def _email_on_commit(customer: Customer, template: str, **extra) -> None:
    customer_id = customer.pk

    def enqueue():
        from django_q.tasks import async_task

        async_task(EMAIL_TASK, customer_id, template, extra)

    transaction.on_commit(enqueue, robust=True)


LIFECYCLE_EMAILS = ("trial_will_end", "subscription_ended", "payment_action_required")


def customer_lifecycle_email_send(*, customer_id: int, template: str, extra: dict | None = None) -> str:
    """Email the customer about their subscription (trial ending, ended, authentication needed)."""
    from billing_console.manage_links import manage_link_make
    from billing_console.selectors import plan_settings
    from billing_console.stripe.checkout import _send

    if template not in LIFECYCLE_EMAILS:
        raise ValueError(f"unknown lifecycle email {template!r}")
    customer = Customer.objects.filter(pk=customer_id).first()
    if customer is None:
        return "skipped"
    context = {"customer": customer, "manage_url": manage_link_make(customer),
               "plan_name": plan_settings(customer.plan)["name"], "pricing_url": settings.PRICING_URL,
               "trial_end": customer.trial_end or customer.current_period_end, **(extra or {})}
    _send(template, customer.email, context)
    with transaction.atomic():
        audit_log(actor_type=AuditEvent.ActorType.SYSTEM, actor="email", action=f"customer.{template}_emailed",
                  target=customer, data={k: v for k, v in (extra or {}).items() if k != "hosted_invoice_url"})
    return "sent"


def trial_will_end_receive(*, event: dict) -> None:
    sub = so.event_object(event)
    customer = customer_by_stripe_keys(subscription_id=so.obj_id(sub.get("id")),
                                        stripe_customer_id=so.subscription_customer_id(sub))
    if customer is None:
        log.info("trial_will_end %s: no console customer", event.get("id"))
        return
    _email_on_commit(customer, "trial_will_end")


def payment_action_required_receive(*, event: dict) -> None:
    """The renewal needs 3-D Secure: email the hosted invoice link; dunning notes it is not a decline."""
    invoice = so.event_object(event)
    customer = customer_by_stripe_keys(subscription_id=so.invoice_subscription_id(invoice),
                                        stripe_customer_id=so.invoice_customer_id(invoice))
    url = invoice.get("hosted_invoice_url") or ""
    if customer is None or not url:
        log.info("payment_action_required %s: no customer or no hosted link", event.get("id"))
        return
    _email_on_commit(customer, "payment_action_required", hosted_invoice_url=url, invoice=invoice.get("id") or "",
                     amount_due=int(invoice.get("amount_remaining", invoice.get("amount_due")) or 0),
                     currency=(invoice.get("currency") or "")[:3])


# --- Refunds --------------------------------------------------------------------------------------
def _invoice_for_charge(charge: dict) -> Invoice | None:
    """The invoice a charge paid: named on the charge (older API), else the customer's paid invoice of the
    same amount closest before the charge (the current API links them only through invoice payments)."""
    invoice_id = so.obj_id(charge.get("invoice"))
    if invoice_id:
        return Invoice.objects.select_for_update().filter(stripe_id=invoice_id).first()
    customer_id = so.obj_id(charge.get("customer"))
    if not customer_id:
        return None
    candidates = Invoice.objects.select_for_update().filter(
        stripe_customer_id=customer_id, amount_paid=int(charge.get("amount") or 0), status="paid")
    created = so.to_datetime(charge.get("created"))
    if created:
        candidates = candidates.filter(Q(stripe_created__lte=created) | Q(stripe_created=None))
    return candidates.order_by("-stripe_created", "-pk").first()


def charge_refund_receive(*, event: dict) -> Invoice | None:
    """charge.refunded / refund.* / charge.refund.updated: the invoice records how much was refunded, when;
    the audit says who (Stripe, with the request that made it)."""
    obj = so.event_object(event)
    if obj.get("object") == "refund":
        if obj.get("status") not in ("succeeded", "pending"):
            return None
        charge_id = so.obj_id(obj.get("charge"))
        charge = obj.get("charge") if isinstance(obj.get("charge"), dict) else {"id": charge_id}
        charge.setdefault("customer", obj.get("customer"))
        refunded = None  # a refund alone does not tell the charge's total refunded
    elif obj.get("object") == "charge":
        charge = obj
        refunded = int(obj.get("amount_refunded") or 0)
    else:
        return None
    at = so.event_created(event) or timezone.now()
    with transaction.atomic(savepoint=False):
        invoice = _invoice_for_charge(charge)
        if invoice is None:
            log.info("refund event %s: no invoice found for charge %s", event.get("id"), charge.get("id"))
            return None
        if refunded is None:
            refunded = invoice.amount_refunded if invoice.amount_refunded else int(obj.get("amount") or 0)
        if refunded <= invoice.amount_refunded:
            return invoice
        before = invoice.amount_refunded
        invoice.amount_refunded, invoice.refunded_at = min(refunded, invoice.amount_paid or refunded), at
        invoice.save(update_fields=["amount_refunded", "refunded_at", "updated_at"])
        request = event.get("request") or {}
        who = (request.get("id") if isinstance(request, dict) else request) or "stripe"
        from billing_console.invoicing.services import invoice_event_record

        invoice_event_record(invoice, "refunded", amount_refunded=invoice.amount_refunded, by=who,
                             idempotency_key=event.get("id", ""))
        audit_log(actor_type=STRIPE, actor=event.get("id", ""), action="invoice.refunded", target=invoice,
                  customer=invoice.customer, data={"invoice": invoice.stripe_id, "charge": charge.get("id"),
                                                   "from": before, "amount_refunded": invoice.amount_refunded,
                                                   "currency": invoice.currency, "by": who, "at": at.isoformat()})
    return invoice


# --- Disputes -------------------------------------------------------------------------------------
def dispute_charge_prepare(event: dict) -> dict:
    """Before the transaction: a dispute names its charge by id; the charge says whose it is and which
    invoice it paid. Not readable (deleted, or Stripe refuses): the dispute is recorded without them."""
    obj = so.event_object(event)
    charge = obj.get("charge")
    if isinstance(charge, dict) or not isinstance(charge, str) or not charge.startswith("ch_"):
        return {}
    try:
        return {"charge": dict(stripe_gateway.charge_retrieve(charge))}
    except stripe_gateway.StripeGatewayError as exc:
        if exc.retryable:
            raise
        log.warning("dispute %s: charge %s not readable (%s)", obj.get("id"), charge, exc.code)
        return {}


def dispute_receive(*, event: dict) -> Dispute | None:
    """charge.dispute.*: recorded once per dispute; opening alerts OPS_EMAIL and flags the customer (and
    locks access if DISPUTE_LOCKS_ACCESS); closing records won or lost and clears the flag."""
    obj = so.event_object(event)
    if obj.get("object") != "dispute" or not isinstance(obj.get("id"), str):
        log.warning("dispute event %s without a dispute ignored", event.get("id"))
        return None
    at = so.event_created(event) or timezone.now()
    charge = obj.get("charge") if isinstance(obj.get("charge"), dict) else (
        (event.get(PREPARED_KEY) or {}).get("charge") or {})
    charge_id = so.obj_id(obj.get("charge")) if isinstance(obj.get("charge"), (str, dict)) else ""
    status = (obj.get("status") or "")[:32]
    closed = status in ("won", "lost") or event.get("type") == "charge.dispute.closed"
    with transaction.atomic(savepoint=False):
        dispute, created = Dispute.objects.select_for_update().get_or_create(
            stripe_id=obj["id"], defaults={"opened_at": so.to_datetime(obj.get("created")) or at})
        if not created and dispute.state_at and at < dispute.state_at:
            return dispute
        if dispute.customer_id is None:
            invoice = _invoice_for_charge({"id": charge_id, **charge}) if charge else None
            customer_id = so.obj_id(charge.get("customer")) if charge else ""
            dispute.customer = (invoice.customer if invoice else None) or customer_by_stripe_keys(
                stripe_customer_id=customer_id) or _mirrored_charge_owner(charge_id)
            dispute.invoice_id = invoice.stripe_id if invoice else ""
        dispute.charge_id = charge_id[:255]
        dispute.amount = int(obj.get("amount") or 0)
        dispute.currency = (obj.get("currency") or "")[:3]
        dispute.reason = (obj.get("reason") or "")[:64]
        dispute.status = status
        dispute.evidence_due_by = so.to_datetime((obj.get("evidence_details") or {}).get("due_by"))
        was_closed = bool(dispute.outcome)
        if closed:
            dispute.outcome = status if status in ("won", "lost") else Dispute.Outcome.OTHER
            dispute.closed_at = dispute.closed_at or at
        dispute.state_at = at
        dispute.save()
        customer = dispute.customer
        if created:
            audit_log(actor_type=STRIPE, actor=event.get("id", ""), action="dispute.opened", target=dispute,
                      customer=customer, data={"charge": charge_id, "amount": dispute.amount,
                                               "currency": dispute.currency, "reason": dispute.reason})
            _ops_alert_on_commit(dispute)
        if closed and not was_closed:
            audit_log(actor_type=STRIPE, actor=event.get("id", ""), action=f"dispute.{dispute.outcome or 'closed'}",
                      target=dispute, customer=customer, data={"status": status})
        if customer is not None:
            _customer_dispute_flag(customer, actor=event.get("id", ""))
    return dispute


def _mirrored_charge_owner(charge_id: str) -> Customer | None:
    """A charge named only by id: its customer from dj-stripe's mirror when it has the charge."""
    if not charge_id:
        return None
    try:
        from djstripe.models import Charge

        stripe_customer_id = Charge.objects.filter(id=charge_id).values_list("customer__id", flat=True).first()
    except Exception:
        return None
    return customer_by_stripe_keys(stripe_customer_id=stripe_customer_id or "")


def _customer_dispute_flag(customer: Customer, *, actor: str) -> None:
    """The flag alone is the lock: with DISPUTE_LOCKS_ACCESS on, the entitlement selector answers DISPUTED while
    it is set, and access returns when the last open dispute closes. Not dunning's access_state: its daily
    policy lifts any lock no unpaid invoice explains, and the customer would be told to pay an invoice."""
    customer = Customer.objects.select_for_update().get(pk=customer.pk)
    is_open = Dispute.objects.filter(customer=customer, outcome=Dispute.Outcome.OPEN).exists()
    if customer.dispute_open == is_open:
        return
    customer.dispute_open = is_open
    customer.save(update_fields=["dispute_open", "updated_at"])
    audit_log(actor_type=STRIPE, actor=actor, action="customer.dispute_flag", target=customer,
              data={"dispute_open": is_open, "locks_access": settings.DISPUTE_LOCKS_ACCESS})


def _ops_alert_on_commit(dispute: Dispute) -> None:
    dispute_id = dispute.pk
    transaction.on_commit(lambda: __import__("django_q.tasks", fromlist=["async_task"]).async_task(
        "billing_console.stripe.tasks.dispute_ops_alert_send", dispute_id), robust=True)


def dispute_ops_alert_send(*, dispute_id: int) -> str:
    """Tell support (OPS_EMAIL) a dispute was opened: amount, reason, customer, evidence deadline."""
    from billing_console.stripe.checkout import _send

    dispute = Dispute.objects.select_related("customer").filter(pk=dispute_id).first()
    if dispute is None or not settings.OPS_EMAIL:
        log.warning("dispute %s opened; OPS_EMAIL is not set, nobody was emailed", dispute_id)
        return "skipped"
    from billing_console.invoicing.services import money_format

    _send("ops_dispute_opened", settings.OPS_EMAIL, {
        "dispute": dispute, "customer": dispute.customer, "amount": money_format(dispute.amount, dispute.currency),
        "locks_access": settings.DISPUTE_LOCKS_ACCESS, "site_url": settings.SITE_URL})
    return "sent"
