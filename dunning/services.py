"""Dunning writes: policies, cases, access locks, support's per-customer settings (the step queue and
its sends are in sending.py).

Every function owns its transaction, locks before deciding, and audits in the same transaction.
`now` is a parameter everywhere time matters, so tests (and the sandbox clock) drive the timeline.
"""
from __future__ import annotations

import logging
from datetime import datetime, timedelta

from django.db import IntegrityError, transaction
from django.db.models import Exists, OuterRef
from django.utils import timezone
from django_q.tasks import async_task

from billing_console.errors import ServiceError
from billing_console.models import AuditEvent, Customer, Invoice
from billing_console.selectors import customer_for_stripe_object
from billing_console.services import audit_log, customer_set_access_state
from billing_console.stripe import gateway as stripe_gateway
from billing_console.stripe.objects import invoice_customer_id, invoice_subscription_id, to_datetime
from billing_console.stripe.statuses import ENDED, ENTITLED
from billing_console.stripe.subscriptions import customer_resync
from billing_console.wording import counted
from dunning.clock import dunning_now
from dunning.models import Channel, CustomerDunning, DunningCase, DunningPolicy, DunningStep, DunningStepLog

log = logging.getLogger("dunning")

LOCK_STATES = (Customer.AccessState.GRACE, Customer.AccessState.SOFT_LOCKED, Customer.AccessState.HARD_LOCKED)

DEFAULT_POLICY_NAME = "Default"
# (code, offset_days, channel, template): the default policy the runbook describes.
DEFAULT_STEPS = (
    ("FAIL_IMMEDIATE", 0, Channel.EMAIL, "payment_failed"),
    ("SOFT_D+1", 1, Channel.WHATSAPP, "reminder"),
    ("SOFT_D+3", 3, Channel.EMAIL, "reminder"),
    ("SOFT_D+7", 7, Channel.WHATSAPP, "reminder"),
    ("FINAL_D+10", 10, Channel.EMAIL, "final_notice"),
)


class DunningError(ServiceError):
    """Bad input or a request the case's state does not allow; the message is fit for support."""

    code = "dunning_refused"


# --- Policies -------------------------------------------------------------------------------
def dunning_policy_ensure_default() -> DunningPolicy:
    """The default policy (created by a data migration; tests call this). Never changes an existing one."""
    with transaction.atomic():
        policy = DunningPolicy.objects.select_for_update().filter(is_default=True).first()
        if policy is not None:
            return policy
        policy, created = DunningPolicy.objects.get_or_create(
            name=DEFAULT_POLICY_NAME, defaults={"is_default": True, "grace_days": 3, "hard_lock_days": 14})
        if not created:
            policy.is_default = True
            policy.save(update_fields=["is_default", "updated_at"])
        if not policy.steps.exists():
            DunningStep.objects.bulk_create(
                DunningStep(policy=policy, code=code, offset_days=offset, channel=channel, template=template)
                for code, offset, channel, template in DEFAULT_STEPS)
        audit_log(actor_type=AuditEvent.ActorType.SYSTEM, actor="dunning", action="dunning.policy_default_set",
                  target=policy, data={"created": created, "steps": [s[0] for s in DEFAULT_STEPS]})
    return policy


def customer_dunning_settings(customer: Customer) -> tuple[DunningPolicy, bool]:
    """(policy, excluded) for a customer: their own settings, else the default policy."""
    own = CustomerDunning.objects.filter(customer=customer).select_related("policy").first()
    if own and own.policy:
        return own.policy, own.excluded
    return dunning_policy_ensure_default(), bool(own and own.excluded)


# --- Cases ----------------------------------------------------------------------------------
def dunning_steps_plan(case: DunningCase, steps: list[DunningStep], logged: set[str], *, excluded: bool,
                now: datetime) -> tuple[list[DunningStepLog], datetime | None]:
    """Logs for the steps due by `now` that have none yet, and when the next one falls due.

    When several steps fall due at once (the task did not run for days), only the latest is sent;
    the earlier ones are recorded as skipped, so the customer does not get a burst of reminders.
    """
    due, later = [], []
    for step in steps:
        if step.code in logged:
            continue
        (due if case.opened_at + timedelta(days=step.offset_days) <= now else later).append(step)
    logs = []
    for i, step in enumerate(due):
        log_row = DunningStepLog(case=case, step_code=step.code, channel=step.channel, template=step.template,
                                 due_at=case.opened_at + timedelta(days=step.offset_days), status=DunningStepLog.Status.QUEUED)
        if excluded:
            log_row.status, log_row.reason = DunningStepLog.Status.SKIPPED, "excluded"
            log_row.detail = "The customer is excluded from dunning."
        elif i < len(due) - 1:
            log_row.status, log_row.reason = DunningStepLog.Status.SKIPPED, "superseded"
            log_row.detail = f"A later step ({due[-1].code}) was already due when this one was queued."
        logs.append(log_row)
    next_at = min((case.opened_at + timedelta(days=s.offset_days) for s in later), default=None)
    return logs, next_at


def dunning_policy_steps(policy_id: int, cache: dict) -> list[DunningStep]:
    if policy_id not in cache:
        cache[policy_id] = list(DunningStep.objects.filter(policy_id=policy_id).order_by("offset_days", "id"))
    return cache[policy_id]


def dunning_case_open(*, invoice: dict, failed_at: datetime, actor: str = "",
                      action_required: bool = False) -> DunningCase | None:
    """A payment of `invoice` failed: open its case once (keyed by invoice id), queue the steps due now,
    put the customer in grace. A repeat (Stripe's retries, duplicate events) only updates the counters.

    Returns None, logging why, when there is nothing to dun: no invoice id, the invoice is known to be paid already
    (a late failure event), it is a subscription's first invoice (the subscription stays incomplete
    and never granted access), or no console customer matches (e.g. a checkout declined before it
    completed). Failing the event instead would also roll back the other apps' receivers.

    `action_required`: the payment waits for 3-D Secure. The case is marked so from the start and the
    steps due now are skipped: the customer was just emailed the link to authenticate, and a "could not
    collect your payment" email beside it would say the card was declined when it was not.
    """
    invoice_id = invoice.get("id") if isinstance(invoice.get("id"), str) else ""
    if not invoice_id.startswith("in_"):
        log.warning("payment_failed without an invoice id ignored: %r", invoice_id[:64],
                    extra={"event": "dunning_bad_invoice"})
        return None
    subscription_id = invoice_subscription_id(invoice)
    stripe_customer_id = invoice_customer_id(invoice)
    if invoice.get("billing_reason") == "subscription_create":
        log.info("payment_failed for first invoice %s ignored: the subscription is incomplete", invoice_id)
        return None
    fields = {
        "amount_due": int(invoice.get("amount_remaining", invoice.get("amount_due")) or 0),
        "currency": (invoice.get("currency") or "")[:3],
        "hosted_invoice_url": invoice.get("hosted_invoice_url") or "",
        "attempt_count": int(invoice.get("attempt_count") or 0),
    }
    with transaction.atomic():
        case = DunningCase.objects.select_for_update().filter(invoice_id=invoice_id).first()
        if case is not None:
            return _case_note_failure(case, fields, failed_at)
        if Invoice.objects.filter(stripe_id=invoice_id, status="paid").exists():
            log.info("payment_failed for paid invoice %s ignored", invoice_id)
            return None
        customer = customer_for_stripe_object(invoice)
        if customer is None:
            log.warning("payment_failed for invoice %s ignored: no customer with subscription %s or Stripe id %s",
                        invoice_id, subscription_id or "-", stripe_customer_id or "-",
                        extra={"event": "dunning_no_customer", "invoice": invoice_id})
            return None
        policy, excluded = customer_dunning_settings(customer)
        try:
            with transaction.atomic():
                case = DunningCase.objects.create(
                    customer=customer, policy=policy, invoice_id=invoice_id, subscription_id=subscription_id,
                    stripe_customer_id=stripe_customer_id, opened_at=failed_at, last_failure_at=failed_at,
                    action_required_at=failed_at if action_required else None, **fields)
        except IntegrityError:  # the same event applied concurrently: the other one opened it
            case = DunningCase.objects.select_for_update().get(invoice_id=invoice_id)
            return _case_note_failure(case, fields, failed_at)
        logs, case.next_step_at = dunning_steps_plan(case, dunning_policy_steps(policy.pk, {}), set(), excluded=excluded,
                                              now=failed_at)
        if action_required:
            for row in logs:
                if row.status == DunningStepLog.Status.QUEUED:
                    row.status, row.reason = DunningStepLog.Status.SKIPPED, "action_required"
                    row.detail = "The customer was emailed the link to authenticate the payment instead."
        DunningStepLog.objects.bulk_create(logs)
        case.save(update_fields=["next_step_at", "updated_at"])
        audit_log(actor_type=AuditEvent.ActorType.STRIPE, actor=actor, action="dunning.case_opened", target=case,
                  customer=customer, data={"invoice": invoice_id, "subscription": subscription_id,
                                           "policy": policy.name, "excluded": excluded,
                                           "queued": [lg.step_code for lg in logs if lg.status == DunningStepLog.Status.QUEUED]})
        if not excluded and customer.access_state == Customer.AccessState.ACTIVE:
            customer_set_access_state(customer=customer, state=Customer.AccessState.GRACE, actor_type=AuditEvent.ActorType.STRIPE,
                                      actor=actor, reason=f"payment failed on {invoice_id}")
        queued = [lg.pk for lg in logs if lg.status == DunningStepLog.Status.QUEUED]
        if queued:
            # The first reminder goes out now rather than at the next task run.
            transaction.on_commit(lambda: async_task("dunning.tasks.send_steps", queued))
    return case


def _case_note_failure(case: DunningCase, fields: dict, failed_at: datetime) -> DunningCase:
    changed = []
    if failed_at > case.last_failure_at:
        case.last_failure_at = failed_at
        changed.append("last_failure_at")
        for name, value in fields.items():
            if value != getattr(case, name) and (value or name == "amount_due"):
                setattr(case, name, value)
                changed.append(name)
    if changed:
        case.save(update_fields=[*changed, "updated_at"])
    return case


def dunning_case_close(*, case: DunningCase, status: str, reason: str, actor_type: str, actor: str = "",
                       at: datetime | None = None) -> DunningCase:
    """Close an active case (recovered or canceled): pending steps are skipped with the reason, and the
    customer's lock is recomputed from what is still open -- lifted at once when nothing is."""
    if status not in (DunningCase.Status.RECOVERED, DunningCase.Status.CANCELED):
        raise DunningError("invalid", f"A case closes as recovered or canceled, not {status!r}.")
    at = at or timezone.now()
    with transaction.atomic():
        case = DunningCase.objects.select_for_update().select_related("customer").get(pk=case.pk)
        if not case.is_active:
            return case
        previous = case.status
        case.status, case.closed_at, case.close_reason, case.next_step_at = status, at, reason[:64], None
        case.save(update_fields=["status", "closed_at", "close_reason", "next_step_at", "updated_at"])
        skipped = DunningStepLog.objects.filter(case=case, status=DunningStepLog.Status.QUEUED).update(
            status=DunningStepLog.Status.SKIPPED, reason=reason[:64], detail=f"Case {status} before this step was sent.",
            next_retry_at=None, updated_at=timezone.now())
        audit_log(actor_type=actor_type, actor=actor, action=f"dunning.case_{status}", target=case,
                  customer=case.customer, data={"from": previous, "reason": reason, "steps_skipped": skipped})
        _customer_refresh_lock(case.customer, now=at, actor_type=actor_type, actor=actor,
                               reason=f"dunning case {case.invoice_id} {status}")
    return case


def dunning_invoice_paid(*, invoice_id: str, paid_at: datetime, actor: str = "") -> DunningCase | None:
    case = DunningCase.objects.filter(invoice_id=invoice_id).first()
    if case is None:
        return None
    return dunning_case_close(case=case, status=DunningCase.Status.RECOVERED, reason="recovered",
                              actor_type=AuditEvent.ActorType.STRIPE, actor=actor, at=paid_at)


def dunning_invoice_voided(*, invoice_id: str, at: datetime, actor: str = "") -> DunningCase | None:
    """invoice.voided: nothing is owed on it any more; its case closes (canceled) and reminders stop."""
    case = DunningCase.objects.filter(invoice_id=invoice_id, status__in=DunningCase.ACTIVE).first()
    if case is None:
        return None
    return dunning_case_close(case=case, status=DunningCase.Status.CANCELED, reason="invoice_voided",
                              actor_type=AuditEvent.ActorType.STRIPE, actor=actor, at=at)


def dunning_invoice_uncollectible(*, invoice_id: str, at: datetime, actor: str = "") -> DunningCase | None:
    """invoice.marked_uncollectible: Stripe gave up collecting; the case is exhausted and no reminder is sent."""
    with transaction.atomic():
        case = DunningCase.objects.select_for_update().filter(invoice_id=invoice_id, status=DunningCase.Status.OPEN).first()
        if case is None:
            return None
        case.status, case.exhausted_at, case.next_step_at = DunningCase.Status.EXHAUSTED, at, None
        case.save(update_fields=["status", "exhausted_at", "next_step_at", "updated_at"])
        skipped = DunningStepLog.objects.filter(case=case, status=DunningStepLog.Status.QUEUED).update(
            status=DunningStepLog.Status.SKIPPED, reason="invoice_uncollectible", detail="Stripe marked the invoice uncollectible.",
            next_retry_at=None, updated_at=timezone.now())
        audit_log(actor_type=AuditEvent.ActorType.STRIPE, actor=actor, action="dunning.case_exhausted", target=case,
                  customer=case.customer, data={"reason": "invoice_uncollectible", "steps_skipped": skipped})
    return case


def dunning_invoice_action_required(*, invoice: dict, at: datetime, actor: str = "") -> DunningCase | None:
    """invoice.payment_action_required: the payment waits for the customer to authenticate (3-D Secure).
    The case is opened as for a failure (reminders carry the pay link) and marked "action required",
    so support and the reminders know the card was not declined."""
    case = dunning_case_open(invoice=invoice, failed_at=at, actor=actor, action_required=True)
    if case is None:
        return None
    with transaction.atomic():
        case = DunningCase.objects.select_for_update().get(pk=case.pk)
        if case.action_required_at is None:
            case.action_required_at = at
            case.save(update_fields=["action_required_at", "updated_at"])
            audit_log(actor_type=AuditEvent.ActorType.STRIPE, actor=actor, action="dunning.action_required",
                      target=case, customer=case.customer, data={"invoice": case.invoice_id})
    return case


def dunning_subscription_changed(*, subscription_id: str, status: str, changed_at: datetime,
                                 actor: str = "") -> list[DunningCase]:
    """The subscription is active again (recovered) or ended (canceled). Only a change newer than the
    case's last failure counts, so a late "active" from before the failure never closes it."""
    if not subscription_id:
        return []
    if status in ENTITLED:
        new_status, reason = DunningCase.Status.RECOVERED, "subscription_active"
    elif status in ENDED:
        new_status, reason = DunningCase.Status.CANCELED, "subscription_canceled"
    else:
        return []
    cases = DunningCase.objects.filter(subscription_id=subscription_id, status__in=DunningCase.ACTIVE)
    if new_status == DunningCase.Status.RECOVERED:
        cases = cases.filter(last_failure_at__lt=changed_at)
    return [dunning_case_close(case=case, status=new_status, reason=reason, actor_type=AuditEvent.ActorType.STRIPE,
                               actor=actor, at=changed_at) for case in cases]


# --- Access locks ---------------------------------------------------------------------------
def access_state_for(*, opened_at: datetime, policy: DunningPolicy, now: datetime) -> str:
    """Past grace_days soft-locked, past hard_lock_days hard-locked; before that, grace."""
    elapsed = now - opened_at
    if elapsed > timedelta(days=policy.hard_lock_days):
        return Customer.AccessState.HARD_LOCKED
    if elapsed > timedelta(days=policy.grace_days):
        return Customer.AccessState.SOFT_LOCKED
    return Customer.AccessState.GRACE


def _customer_refresh_lock(customer: Customer, *, now: datetime, actor_type: str, actor: str, reason: str) -> Customer:
    """Set the lock the customer's oldest active case calls for; active when none (and not excluded)."""
    if customer.access_state not in (Customer.AccessState.ACTIVE, *LOCK_STATES):
        return customer  # canceled: not dunning's to change
    oldest = (DunningCase.objects.filter(customer=customer, status__in=DunningCase.ACTIVE)
              .select_related("policy").order_by("opened_at").first())
    excluded = CustomerDunning.objects.filter(customer=customer, excluded=True).exists()
    target = Customer.AccessState.ACTIVE if (oldest is None or excluded) else access_state_for(opened_at=oldest.opened_at,
                                                                            policy=oldest.policy, now=now)
    if customer.access_state == target:
        return customer
    return customer_set_access_state(customer=customer, state=target, actor_type=actor_type, actor=actor, reason=reason)


def dunning_enforce_access_policies(*, now: datetime | None = None, actor_type: str = AuditEvent.ActorType.CRON,
                                    actor: str = "enforce_access_policies") -> dict:
    """Bring every customer's lock in line with their oldest unpaid case (one read of the active cases);
    lift locks that no active case explains; cancel exhausted cases the policy says to cancel."""
    now = now or dunning_now()
    counts = {"checked": 0, "grace": 0, "soft_locked": 0, "hard_locked": 0, "unlocked": 0, "cancel_requested": 0}
    rows = (DunningCase.objects.filter(status__in=DunningCase.ACTIVE)
            .exclude(customer__dunning_settings__excluded=True)
            .order_by("customer_id", "opened_at")
            .values_list("customer_id", "customer__access_state", "opened_at", "policy__grace_days",
                         "policy__hard_lock_days"))
    seen: set[int] = set()
    # One plain read (five small columns a case): a server-side cursor takes seconds on 10,000 cases
    # before its first rows.
    for customer_id, state, opened_at, grace_days, hard_days in rows:
        if customer_id in seen:
            continue
        seen.add(customer_id)
        counts["checked"] += 1
        target = access_state_for(opened_at=opened_at, policy=DunningPolicy(grace_days=grace_days,
                                                                             hard_lock_days=hard_days), now=now)
        if state == target or state == Customer.AccessState.CANCELED:
            continue
        customer_set_access_state(customer=Customer(pk=customer_id), state=target, actor_type=actor_type, actor=actor,
                                  reason=f"dunning policy: {counted((now - opened_at).days, 'day')} past due")
        counts[target] += 1
    unpaid = (DunningCase.objects.filter(customer=OuterRef("pk"), status__in=DunningCase.ACTIVE)
              .exclude(customer__dunning_settings__excluded=True))
    orphans = Customer.objects.filter(access_state__in=LOCK_STATES).exclude(Exists(unpaid)).values_list("pk", flat=True)
    for customer_id in list(orphans):
        customer_set_access_state(customer=Customer(pk=customer_id), state=Customer.AccessState.ACTIVE, actor_type=actor_type,
                                  actor=actor, reason="no unpaid dunning case")
        counts["unlocked"] += 1
    counts["cancel_requested"] = _cancel_due_cases(now=now, actor_type=actor_type, actor=actor)
    if actor_type != AuditEvent.ActorType.CRON:  # the cron's runs are CronRuns; a person's request is audited
        with transaction.atomic():
            audit_log(actor_type=actor_type, actor=actor, action="dunning.access_policies_enforced",
                      target_type="dunning.access_policies", target_id="all", data=counts)
    return counts


def _cancel_due_cases(*, now: datetime, actor_type: str, actor: str) -> int:
    """Exhausted cases whose policy cancels after N days: cancel the subscription in Stripe."""
    due = (DunningCase.objects.filter(status=DunningCase.Status.EXHAUSTED, cancel_requested_at__isnull=True,
                                      policy__cancel_after_days__isnull=False)
           .select_related("policy"))
    count = 0
    for case in due:
        if now - case.opened_at > timedelta(days=case.policy.cancel_after_days):
            dunning_case_cancel_subscription(case=case, actor_type=actor_type, actor=actor, now=now)
            count += 1
    return count


def dunning_case_cancel_subscription(*, case: DunningCase, actor_type: str, actor: str = "",
                                     now: datetime | None = None) -> DunningCase:
    """Cancel the case's subscription in Stripe, as the policy says after its last step. Recorded before
    the call; the idempotency key is the case's, so a repeat never cancels twice. A failure Stripe may
    recover from is tried again at the next enforcement; any other stays on the case for support."""
    now = now or timezone.now()
    with transaction.atomic():
        case = DunningCase.objects.select_for_update().get(pk=case.pk)
        if not case.is_active or case.cancel_requested_at:
            return case
        if not case.subscription_id:
            raise DunningError("no_subscription", f"Case {case.invoice_id} has no subscription to cancel.")
        case.cancel_requested_at, case.cancel_error = now, ""
        case.save(update_fields=["cancel_requested_at", "cancel_error", "updated_at"])
        audit_log(actor_type=actor_type, actor=actor, action="dunning.subscription_cancel_requested", target=case,
                  customer=Customer(pk=case.customer_id), data={"subscription": case.subscription_id})
    try:
        if not stripe_gateway.configured():
            raise stripe_gateway.StripeGatewayError("Stripe is not configured (STRIPE_SECRET_KEY).", retryable=True)
        stripe_gateway.subscription_cancel(case.subscription_id, idempotency_key=f"dunning-cancel-{case.pk}")
    except stripe_gateway.StripeGatewayError as exc:
        with transaction.atomic():
            case = DunningCase.objects.select_for_update().get(pk=case.pk)
            case.cancel_error = exc.message[:1000]
            if exc.retryable:
                case.cancel_requested_at = None
            case.save(update_fields=["cancel_error", "cancel_requested_at", "updated_at"])
            audit_log(actor_type=actor_type, actor=actor, action="dunning.subscription_cancel_failed", target=case,
                      customer=Customer(pk=case.customer_id), data={"error": case.cancel_error, "code": exc.code,
                                                                    "retryable": exc.retryable})
        return case
    return dunning_case_close(case=case, status=DunningCase.Status.CANCELED, reason="canceled_by_policy",
                              actor_type=actor_type, actor=actor, at=now)


def dunning_case_sync_from_stripe(*, case: DunningCase, actor_type: str, actor: str = "") -> DunningCase:
    """Support's "sync from Stripe" (runbook: paid but still locked, a webhook was missed): resync the
    customer's subscription, re-read the invoice, and close the case if Stripe says it is paid or over.
    Raises StripeGatewayError when Stripe cannot answer."""
    case = DunningCase.objects.select_related("customer").get(pk=case.pk)
    customer = customer_resync(customer=case.customer, actor_type=actor_type, actor=actor)
    invoice = stripe_gateway.invoice_retrieve(case.invoice_id)
    status = invoice.get("status")
    if status == "paid":
        paid_at = to_datetime((invoice.get("status_transitions") or {}).get("paid_at")) or timezone.now()
        return dunning_case_close(case=case, status=DunningCase.Status.RECOVERED, reason="recovered_on_resync",
                                  actor_type=actor_type, actor=actor, at=paid_at)
    if status == "void" or customer.subscription_status in ENDED:
        return dunning_case_close(case=case, status=DunningCase.Status.CANCELED, reason=f"{status or 'canceled'}_on_resync",
                                  actor_type=actor_type, actor=actor)
    with transaction.atomic():
        audit_log(actor_type=actor_type, actor=actor, action="dunning.case_synced", target=case, customer=customer,
                  data={"invoice_status": status, "subscription_status": customer.subscription_status})
    return case


def dunning_case_for_subscription(subscription_id: str) -> DunningCase:
    case = (DunningCase.objects.filter(subscription_id=subscription_id, status__in=DunningCase.ACTIVE)
            .order_by("-opened_at").first())
    if case is None:
        if not DunningCase.objects.filter(subscription_id=subscription_id).exists():
            raise DunningError("not_found", f"No dunning case for subscription {subscription_id!r}.")
        raise DunningError("not_found", f"Subscription {subscription_id!r} has no open dunning case (all closed).")
    return case


def customer_dunning_update(*, customer: Customer, policy: DunningPolicy | None, excluded: bool, note: str = "",
                            actor_type: str, actor: str = "", now: datetime | None = None) -> CustomerDunning:
    """Assign a policy to a customer or exclude them (support, on the customer page). Excluding lifts any
    dunning lock at once; including again lets the oldest unpaid case decide."""
    now = now or dunning_now()
    with transaction.atomic():
        customer = Customer.objects.select_for_update().get(pk=customer.pk)
        row, _ = CustomerDunning.objects.select_for_update().get_or_create(customer=customer)
        before = {"policy": row.policy.name if row.policy else None, "excluded": row.excluded, "note": row.note}
        row.policy, row.excluded, row.note = policy, bool(excluded), (note or "")[:255]
        after = {"policy": policy.name if policy else None, "excluded": row.excluded, "note": row.note}
        if before == after:
            return row
        row.save()
        audit_log(actor_type=actor_type, actor=actor, action="dunning.customer_settings_changed", target=row,
                  customer=customer, data={"from": before, "to": after})
        if before["excluded"] != after["excluded"]:
            _customer_refresh_lock(customer, now=now, actor_type=actor_type, actor=actor,
                                   reason="excluded from dunning" if row.excluded else "included in dunning again")
    return row
