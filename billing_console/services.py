"""Core writes: audit, cron runs, access state, vault rotation.

Every function owns its transaction, locks before deciding, and audits in the same transaction.
"""
from __future__ import annotations

import logging
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import timedelta
from typing import Callable, Iterator

from django.conf import settings
from django.db import IntegrityError, transaction
from django.db.models import Model
from django.utils import timezone

from billing_console.errors import ServiceError
from billing_console.models import AuditEvent, CronRun, Customer
from billing_console.vault import Keyring, VaultError, aad_for, encrypted_columns

log = logging.getLogger("billing_console")


# --- Audit ----------------------------------------------------------------------------------
def audit_log(*, actor_type: str, actor: str = "", action: str, target: Model | None = None,
              target_type: str = "", target_id: str = "", customer: Customer | None = None,
              data: dict | None = None) -> AuditEvent:
    """Record a state change. Call inside the transaction that makes the change.

    The target is a row (`target=instance`) or, for what is not one row (a backup file, the vault, a
    run over every customer), named explicitly: `target_type="billing_console.backup", target_id=name`.
    """
    if target is not None:
        target_type, target_id = target._meta.label_lower, str(target.pk)
    if not target_type or not target_id:
        raise ServiceError("invalid", "An audit event needs a target row or a target_type and target_id.")
    if customer is None and isinstance(target, Customer):
        customer = target
    event = AuditEvent.objects.create(
        actor_type=actor_type,
        actor=str(actor)[:255],
        action=action,
        target_type=target_type,
        target_id=str(target_id),
        customer=customer,
        data=data or {},
    )
    log.info("audit %s", action, extra={"event": "audit", "action": action, "target": f"{event.target_type}#{event.target_id}",
                                        "actor": f"{actor_type}:{actor}"})
    return event


def actor_of(user) -> tuple[str, str]:
    """(actor_type, actor) for a Django user acting in the admin."""
    return AuditEvent.ActorType.ADMIN, getattr(user, "get_username", lambda: str(user))()


# --- Customer access ------------------------------------------------------------------------
def customer_set_access_state(*, customer: Customer, state: str, actor_type: str, actor: str = "",
                              reason: str = "") -> Customer:
    """Move a customer's access state (dunning locks, cancellation, recovery). Audited; no-op if unchanged."""
    if state not in Customer.AccessState.values:
        raise ServiceError("invalid", f"Unknown access state {state!r}.")
    with transaction.atomic():
        customer = Customer.objects.select_for_update().get(pk=customer.pk)
        if customer.access_state == state:
            return customer
        previous = customer.access_state
        customer.access_state = state
        customer.access_state_changed_at = timezone.now()
        customer.save(update_fields=["access_state", "access_state_changed_at", "updated_at"])
        audit_log(actor_type=actor_type, actor=actor, action="customer.access_state_changed", target=customer,
                  data={"from": previous, "to": state, "reason": reason})
    return customer


def customer_rotate_manage_salt(*, customer: Customer, actor_type: str, actor: str = "") -> Customer:
    """Revoke every manage link already sent to this customer."""
    from billing_console.models import new_salt

    with transaction.atomic():
        customer = Customer.objects.select_for_update().get(pk=customer.pk)
        customer.manage_salt = new_salt()
        customer.save(update_fields=["manage_salt", "updated_at"])
        audit_log(actor_type=actor_type, actor=actor, action="customer.manage_links_revoked", target=customer)
    return customer


def customer_change_email(*, customer: Customer, new_email: str, actor_type: str, actor: str = "") -> Customer:
    """The one way support changes a customer's email (the address /recover sends manage links to): the old and
    new values are audited, every manage link already sent is revoked, and the old address is told.
    Raises ServiceError (fields: new_email) for an invalid address or one another customer has."""
    from django.core.exceptions import ValidationError
    from django.core.validators import validate_email
    from django_q.tasks import async_task

    from billing_console.models import new_salt

    email = (new_email or "").strip().lower()
    try:
        validate_email(email)
    except ValidationError:
        raise ServiceError("invalid", fields={"new_email": "Enter a valid email address."}) from None
    with transaction.atomic():
        customer = Customer.objects.select_for_update().get(pk=customer.pk)
        if customer.email == email:
            return customer
        if Customer.objects.filter(email__iexact=email).exclude(pk=customer.pk).exists():
            raise ServiceError("email_taken", fields={"new_email": "Another customer already has this email."})
        old = customer.email
        customer.email, customer.manage_salt = email, new_salt()
        try:
            with transaction.atomic():
                customer.save(update_fields=["email", "manage_salt", "updated_at"])
        except IntegrityError:  # taken by a concurrent write since the check
            raise ServiceError("email_taken", fields={"new_email": "Another customer already has this email."}) from None
        audit_log(actor_type=actor_type, actor=actor, action="customer.email_changed", target=customer,
                  data={"from": old, "to": email, "manage_links_revoked": True})
        customer_id = customer.pk
        transaction.on_commit(lambda: async_task("billing_console.stripe.tasks.customer_email_changed_notice_send",
                                                 customer_id, old))
    return customer


# --- Cron runs ------------------------------------------------------------------------------
def cron_start(name: str) -> CronRun | None:
    """Claim the cron `name`. Returns None (and records a skip) when another run holds it."""
    now = timezone.now()
    stale_before = now - timedelta(minutes=settings.CRON_STALE_AFTER_MINUTES)
    # A run that crashed without finishing must not block every later start.
    CronRun.objects.filter(name=name, status=CronRun.Status.RUNNING, started_at__lt=stale_before).update(
        status=CronRun.Status.ABANDONED, finished_at=now, error_summary="No finish recorded; taken as crashed.")
    try:
        with transaction.atomic():
            return CronRun.objects.create(name=name, status=CronRun.Status.RUNNING)
    except IntegrityError:
        CronRun.objects.create(name=name, status=CronRun.Status.SKIPPED, finished_at=now,
                               error_summary="Another run of this cron was still running.")
        log.warning("cron %s skipped: already running", name, extra={"event": "cron_skipped", "cron": name})
        return None


def cron_finish(run: CronRun, *, error: str = "") -> CronRun:
    run.finished_at = timezone.now()
    failures = int(run.counts.get("errors", 0) or 0) + int(run.counts.get("failed", 0) or 0)
    run.status = CronRun.Status.ERRORS if (error or failures) else CronRun.Status.OK
    run.error_summary = (error or run.error_summary)[:2000]
    run.save(update_fields=["finished_at", "status", "counts", "error_summary"])
    log.info("cron %s finished %s %s", run.name, run.status, run.counts,
             extra={"event": "cron_finished", "cron": run.name, "status": run.status, "counts": run.counts})
    return run


@contextmanager
def cron_guard(name: str) -> Iterator[CronRun | None]:
    """`with cron_guard("push") as run:` -- run is None when skipped; put counts in run.counts."""
    run = cron_start(name)
    if run is None:
        yield None
        return
    try:
        yield run
    except Exception as exc:
        cron_finish(run, error=f"{type(exc).__name__}: {exc}")
        raise
    cron_finish(run)


# --- Vault rotation -------------------------------------------------------------------------
@dataclass
class VaultRotation:
    totals: dict[str, int]  # "<model label>.<column>" -> values re-encrypted
    unreadable: list[tuple[str, str, str]] = field(default_factory=list)  # (model label, row id, column)


def vault_rotate(*, batch_size: int = 200, progress: Callable[[str], None] | None = None) -> VaultRotation:
    """Re-encrypt every vault value under the current master key, in batches.

    Safe to interrupt and run again: rows already under the current key are skipped, and each
    batch commits on its own. A value no key in the keyring can read is left as it is and listed
    (model, row id, column), so one bad row never stops the rest; support clears or re-collects it.
    """
    keyring = Keyring.from_settings()
    current_prefix = f"v1.{keyring.current.kid}."
    result = VaultRotation(totals={})
    for model, column in encrypted_columns():
        label = f"{model._meta.label}.{column}"
        done = 0
        pending = (model.objects.exclude(**{column: ""}).exclude(**{f"{column}__startswith": current_prefix})
                   .order_by("pk").values_list("pk", flat=True))
        after = None  # walk by primary key: unreadable rows stay pending and must not be met again
        while True:
            with transaction.atomic():
                pks = list((pending.filter(pk__gt=after) if after is not None else pending)[:batch_size])
                if not pks:
                    break
                after = pks[-1]
                rows = model.objects.select_for_update().filter(pk__in=pks).order_by("pk")
                for row in rows:
                    token = getattr(row, column)
                    if not keyring.needs_rotation(token):
                        continue
                    try:
                        plaintext = keyring.decrypt(token, aad_for(row, column))
                    except VaultError:
                        result.unreadable.append((model._meta.label, str(row.pk), column))
                        continue
                    setattr(row, column, keyring.encrypt(plaintext, aad_for(row, column)))
                    row.save(update_fields=[column])
                    done += 1
            if progress:
                progress(f"{label}: {done} re-encrypted so far")
        result.totals[label] = done
    with transaction.atomic():
        audit_log(actor_type=AuditEvent.ActorType.SYSTEM, actor="rotate_master_key", action="vault.rotated",
                  target_type="billing_console.vault", target_id="vault", data={"key_id": keyring.current.kid, "counts": result.totals,
                                               "unreadable": [list(u) for u in result.unreadable]})
    return result

