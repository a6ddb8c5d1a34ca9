"""The dunning step queue and its sends: queue due steps, claim, deliver through the channels, record.

Every function owns its transaction, locks before deciding, and audits in the same transaction.
A send is recorded before (claimed: "sending", attempts + 1) and after (sent / retry / failed /
skipped), so nothing is sent twice and nothing vanishes; payment that lands before the claim means
nothing is sent, because the claim only takes steps of active cases and locks the case row.
"""
from __future__ import annotations

import logging
from datetime import datetime, timedelta

from django.conf import settings
from django.db import transaction
from django.db.models import Exists, F, OuterRef, Q
from django.template import TemplateDoesNotExist, TemplateSyntaxError
from django.utils import timezone

from billing_console.db import update_rows
from billing_console.models import AuditEvent, Customer
from billing_console.services import audit_log
from dunning import channels
from dunning.clock import dunning_now
from dunning.models import Channel, DunningCase, DunningStep, DunningStepLog
from dunning.services import DunningError, dunning_steps_plan, dunning_policy_steps

log = logging.getLogger("dunning")

def dunning_run(*, now: datetime | None = None) -> dict:
    """One pass of the dunning task: give up on sends a dead worker left, queue the steps now due,
    send every due step, and mark cases whose steps are all done as exhausted."""
    now = now or dunning_now()
    counts = {"stale": _fail_stale_sends(now=now)}
    counts.update(dunning_steps_queue_due(now=now))
    for key, value in dunning_steps_send(now=now).items():
        counts[key] = counts.get(key, 0) + value
    counts["exhausted"] = _mark_exhausted(now=now)
    return counts


def _fail_stale_sends(*, now: datetime) -> int:
    """A step left "sending" by a worker that died mid-send may or may not have reached the customer:
    it becomes failed for support (who can check and retry), never resent blindly."""
    before = now - timedelta(minutes=settings.DUNNING_SENDING_STALE_MINUTES)
    return DunningStepLog.objects.filter(status=DunningStepLog.Status.SENDING, last_attempt_at__lt=before).update(
        status=DunningStepLog.Status.FAILED, reason="outcome_unknown", next_retry_at=None, updated_at=timezone.now(),
        detail="The worker stopped during the send; check the provider before retrying.")


def dunning_steps_queue_due(*, now: datetime | None = None) -> dict:
    """Create the log rows of every step that fell due, in batches of open cases claimed with SKIP LOCKED."""
    now = now or dunning_now()
    counts = {"queued": 0, "skipped": 0}
    steps_cache: dict = {}
    batch_size = settings.DUNNING_BATCH_SIZE
    while True:
        with transaction.atomic():
            cases = list(DunningCase.objects.select_for_update(skip_locked=True, of=("self",))
                         .filter(status=DunningCase.Status.OPEN, next_step_at__lte=now)
                         .select_related("customer__dunning_settings").order_by("next_step_at")[:batch_size])
            if not cases:
                break
            logged: dict[int, set[str]] = {}
            for case_id, code in DunningStepLog.objects.filter(case__in=cases).values_list("case_id", "step_code"):
                logged.setdefault(case_id, set()).add(code)
            new_logs = []
            for case in cases:
                settings_row = getattr(case.customer, "dunning_settings", None)
                logs, case.next_step_at = dunning_steps_plan(case, dunning_policy_steps(case.policy_id, steps_cache),
                                                      logged.get(case.pk, set()),
                                                      excluded=bool(settings_row and settings_row.excluded), now=now)
                case.updated_at = now
                new_logs.extend(logs)
            DunningStepLog.objects.bulk_create(new_logs, ignore_conflicts=True)
            update_rows(DunningCase, cases, ["next_step_at", "updated_at"])
        for row in new_logs:
            counts["queued" if row.status == DunningStepLog.Status.QUEUED else "skipped"] += 1
        if len(cases) < batch_size:
            break
    return counts


def dunning_steps_send(*, now: datetime | None = None, ids: list[int] | None = None) -> dict:
    """Send due queued steps (or exactly `ids`), a batch at a time: claim, deliver, record.

    Safe with any number of workers: the claim takes rows with FOR UPDATE SKIP LOCKED (the log and its
    case) and moves them to "sending" before anything leaves, so each step is sent once.
    """
    now = now or dunning_now()
    counts = {"sent": 0, "retry": 0, "failed": 0, "skipped": 0, "deferred": 0}
    batch_size = settings.DUNNING_BATCH_SIZE
    while True:
        claimed = _claim(now=now, limit=batch_size, ids=ids)
        if not claimed:
            break
        results = _deliver(claimed, now=now)
        for outcome in _record(claimed, results, now=now):
            counts[outcome] += 1
        if ids is not None or len(claimed) < batch_size:
            break
    return counts


def _claim(*, now: datetime, limit: int, ids: list[int] | None) -> list[DunningStepLog]:
    with transaction.atomic():
        qs = (DunningStepLog.objects.select_for_update(skip_locked=True, of=("self", "case"))
              .select_related("case", "case__policy", "case__customer", "case__customer__dunning_settings")
              .filter(status=DunningStepLog.Status.QUEUED, case__status__in=DunningCase.ACTIVE))
        if ids is None:
            qs = qs.filter(Q(next_retry_at__isnull=True) | Q(next_retry_at__lte=now), due_at__lte=now)
        else:
            qs = qs.filter(pk__in=ids)
        claimed = list(qs.order_by("due_at", "id")[:limit])
        if claimed:
            DunningStepLog.objects.filter(pk__in=[row.pk for row in claimed]).update(
                status=DunningStepLog.Status.SENDING, attempts=F("attempts") + 1, last_attempt_at=now, updated_at=timezone.now())
    return claimed


def _deliver(rows: list[DunningStepLog], *, now: datetime) -> list[channels.SendResult]:
    """Send each claimed step through its channel. Never raises: every row gets a result to record."""
    results: list[channels.SendResult | None] = [None] * len(rows)
    whatsapp: list[tuple[int, str]] = []  # (index, E.164 number) of the rows that may go out
    client = channels.EvolutionClient()
    for i, row in enumerate(rows):
        customer = row.case.customer
        own = getattr(customer, "dunning_settings", None)
        if own is not None and own.excluded:
            results[i] = channels.SendResult(channels.SKIPPED, "excluded", "The customer is excluded from dunning.")
        elif row.channel == Channel.WHATSAPP:
            if not client.configured:
                results[i] = channels.SendResult(channels.SKIPPED, "whatsapp_not_configured",
                                                 "EVOLUTION_API_URL / EVOLUTION_API_KEY are not set.")
            elif not customer.phone:
                results[i] = channels.SendResult(channels.SKIPPED, "no_phone", "The customer has no phone number.")
            elif (number := channels.e164(customer.phone)) is None:
                results[i] = channels.SendResult(channels.SKIPPED, "invalid_phone",
                                                 f"{customer.phone!r} is not a valid E.164 number (e.g. +5511999999999).")
            else:
                whatsapp.append((i, number))
    granted = channels.whatsapp_reserve(len(whatsapp), now=now, instance=client.instance)
    for n, (i, _number) in enumerate(whatsapp):
        if n >= granted:
            results[i] = channels.SendResult(channels.DEFERRED, "rate_limited",
                                             "This minute's WhatsApp allowance is used up; sent in the next one.",
                                             retry_after=60 - int(now.timestamp()) % 60)
    numbers = dict(whatsapp)
    with client, channels.EmailSender() as email:
        for i, row in enumerate(rows):
            if results[i] is not None:
                continue
            try:
                message = channels.render(channel=row.channel, template=row.template, case=row.case,
                                          customer=row.case.customer, step_code=row.step_code, now=now)
                if row.channel == Channel.WHATSAPP:
                    results[i] = client.send_text(numbers[i], message.text)
                else:
                    results[i] = email.send(message)
            except (TemplateDoesNotExist, TemplateSyntaxError) as exc:
                results[i] = channels.SendResult(channels.FAILED, "template_error", f"{type(exc).__name__}: {exc}")
            except Exception as exc:  # one bad row must not leave the whole batch stuck in "sending"
                log.exception("dunning send of log %s failed", row.pk)
                results[i] = channels.SendResult(channels.RETRY, "internal_error", f"{type(exc).__name__}: {exc}"[:500])
    return results


def retry_delay(attempts: int) -> timedelta:
    """Exponential backoff from the base, capped: 5 min, 10, 20, 40 ... with the defaults."""
    seconds = settings.DUNNING_RETRY_BASE_SECONDS * 2 ** max(0, attempts - 1)
    return timedelta(seconds=min(seconds, settings.DUNNING_RETRY_MAX_SECONDS))


def _record(rows: list[DunningStepLog], results: list[channels.SendResult], *, now: datetime) -> list[str]:
    """Write every result of a batch in one statement. `row.attempts` still holds the count before the claim."""
    outcomes = []
    for row, result in zip(rows, results):
        attempts = row.attempts + 1
        row.provider_response = channels.scrub(result.response) if result.response else row.provider_response
        row.reason, row.detail, row.next_retry_at = result.reason, channels.scrub(result.detail), None
        row.updated_at = timezone.now()
        outcome = result.outcome
        if outcome == channels.SENT:
            row.status, row.sent_at, row.attempts = DunningStepLog.Status.SENT, now, attempts
            row.provider_message_id = result.message_id[:255]
        elif outcome in (channels.SKIPPED, channels.DEFERRED):
            # Nothing went out: the attempt is not counted.
            row.status = DunningStepLog.Status.SKIPPED if outcome == channels.SKIPPED else DunningStepLog.Status.QUEUED
            if outcome == channels.DEFERRED:
                row.next_retry_at = now + timedelta(seconds=result.retry_after or 60)
        elif outcome == channels.RETRY and attempts < settings.DUNNING_MAX_ATTEMPTS:
            row.status, row.attempts = DunningStepLog.Status.QUEUED, attempts
            wait = retry_delay(attempts)
            if result.retry_after:
                wait = max(wait, timedelta(seconds=result.retry_after))
            row.next_retry_at = now + wait
        else:
            row.status, row.attempts = DunningStepLog.Status.FAILED, attempts
            if outcome == channels.RETRY:
                row.detail = f"{row.detail} (gave up after {attempts} attempts)"
                outcome = channels.FAILED
        outcomes.append(outcome)
        log.info("dunning step %s %s for case %s: %s %s", row.step_code, row.status, row.case_id, row.reason,
                 row.provider_message_id, extra={"event": "dunning_step", "log_id": row.pk, "status": row.status})
    update_rows(DunningStepLog, rows, ["status", "reason", "detail", "attempts", "sent_at", "next_retry_at",
                                       "provider_message_id", "provider_response", "updated_at"])
    return outcomes


def _mark_exhausted(*, now: datetime) -> int:
    """Open cases with every step logged and none pending: exhausted (locks still apply)."""
    pending = DunningStepLog.objects.filter(case=OuterRef("pk"), status__in=DunningStepLog.PENDING)
    with transaction.atomic():
        cases = list(DunningCase.objects.select_for_update(skip_locked=True, of=("self",))
                     .filter(status=DunningCase.Status.OPEN, next_step_at__isnull=True)
                     .exclude(Exists(pending)).only("pk", "customer_id", "invoice_id"))
        if not cases:
            return 0
        DunningCase.objects.filter(pk__in=[c.pk for c in cases]).update(
            status=DunningCase.Status.EXHAUSTED, exhausted_at=now, updated_at=timezone.now())
        # One insert for the batch (audit_log writes one row per call).
        AuditEvent.objects.bulk_create(
            AuditEvent(actor_type=AuditEvent.ActorType.CRON, actor="dunning_send", action="dunning.case_exhausted",
                       target_type=DunningCase._meta.label_lower, target_id=str(c.pk), customer_id=c.customer_id,
                       data={"invoice": c.invoice_id}) for c in cases)
    return len(cases)


# --- Support's tools ------------------------------------------------------------------------
def dunning_step_send_now(*, case: DunningCase, step_code: str, actor_type: str, actor: str = "",
                          now: datetime | None = None) -> DunningStepLog:
    """Send one step of an active case now, whatever its day (the runbook's manual send). A step that
    was sent is not sent again; a failed or skipped one is queued afresh."""
    now = now or dunning_now()
    step_code = (step_code or "").strip().upper()
    with transaction.atomic():
        case = DunningCase.objects.select_for_update().select_related("policy").get(pk=case.pk)
        if not case.is_active:
            raise DunningError("case_closed", f"Case {case.invoice_id} is {case.status}; nothing is sent for a closed case.")
        step = DunningStep.objects.filter(policy=case.policy, code=step_code).first()
        if step is None:
            codes = ", ".join(case.policy.steps.values_list("code", flat=True))
            raise DunningError("unknown_step", f"Unknown step {step_code!r} for policy {case.policy.name} (steps: {codes}).")
        row = DunningStepLog.objects.select_for_update().filter(case=case, step_code=step.code).first()
        if row is None:
            row = DunningStepLog.objects.create(case=case, step_code=step.code, channel=step.channel,
                                                template=step.template, due_at=now, manual=True)
        else:
            _requeue(row, now=now)
        audit_log(actor_type=actor_type, actor=actor, action="dunning.step_send_requested", target=row,
                  customer=Customer(pk=case.customer_id), data={"case": case.invoice_id, "step": step.code})
    dunning_steps_send(now=now, ids=[row.pk])
    row.refresh_from_db()
    return row


def dunning_step_retry(*, step_log: DunningStepLog, actor_type: str, actor: str = "",
                       now: datetime | None = None) -> DunningStepLog:
    """Support's retry of a failed (or skipped, e.g. after fixing the phone) step: fresh attempts, sent now."""
    now = now or dunning_now()
    with transaction.atomic():
        row = DunningStepLog.objects.select_for_update().select_related("case").get(pk=step_log.pk)
        if row.status not in (DunningStepLog.Status.FAILED, DunningStepLog.Status.SKIPPED):
            raise DunningError("invalid_state", f"Step log #{row.pk} is {row.status}; only failed or skipped steps are retried.")
        if not row.case.is_active:
            raise DunningError("case_closed", f"Case {row.case.invoice_id} is {row.case.status}; nothing is sent for a closed case.")
        previous = {"status": row.status, "reason": row.reason, "attempts": row.attempts}
        _requeue(row, now=now)
        audit_log(actor_type=actor_type, actor=actor, action="dunning.step_retry_requested", target=row,
                  customer=Customer(pk=row.case.customer_id), data={"case": row.case.invoice_id,
                                                                    "step": row.step_code, "previous": previous})
    dunning_steps_send(now=now, ids=[row.pk])
    row.refresh_from_db()
    return row


def _requeue(row: DunningStepLog, *, now: datetime) -> None:
    if row.status == DunningStepLog.Status.SENT:
        raise DunningError("already_sent", f"{row.step_code} was already sent at {row.sent_at:%Y-%m-%d %H:%M} UTC; a step is sent once.")
    if row.status == DunningStepLog.Status.SENDING:
        raise DunningError("in_progress", f"{row.step_code} is being sent right now.")
    if row.status == DunningStepLog.Status.FAILED:
        row.attempts = 0  # support's retry gets a fresh allowance
    row.status, row.reason, row.detail, row.next_retry_at, row.manual = DunningStepLog.Status.QUEUED, "", "", None, True
    row.save(update_fields=["status", "reason", "detail", "next_retry_at", "manual", "attempts", "updated_at"])
