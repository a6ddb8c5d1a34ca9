"""Every write of the deployments app but the push: input checks, provisioning, token rotation,
pause/resume, pinning, push now, requeue, rollback (the push engine is in push.py, releases in releases.py).

Each function owns its transaction, locks the row before deciding, returns early when already done and
audits in the same transaction.
"""
from __future__ import annotations

import logging
import re
from typing import Iterable
from uuid import UUID

from django.db import IntegrityError, transaction
from django.db.models import Q
from django.utils import timezone
from django_q.tasks import async_task

from billing_console.errors import ServiceError
from billing_console.models import AuditEvent, Customer
from billing_console.ops.rebuild import remember_on_stripe
from billing_console.selectors import customer_entitlement, plan_settings
from billing_console.stripe.statuses import ENDED
from billing_console.services import audit_log
from billing_console.vault import VaultError
from deployments.cloudflare import CloudflareClient, CloudflareError
from deployments.models import AUTH_ERROR_CODES, BundleRelease, Deployment, ErrorCode, PublishVersion
from deployments.releases import release_latest_read
from deployments.selectors import ResumeBlock, customer_lock_reason, deployment_resume_block, latest_release

log = logging.getLogger("deployments")

ACCOUNT_ID_RE = re.compile(r"^[0-9a-f]{32}$")
SCRIPT_NAME_RE = re.compile(r"^[a-z0-9][a-z0-9_-]{0,62}$")
TOKEN_RE = re.compile(r"^[A-Za-z0-9_-]{20,200}$")
ACTOR_CRON = AuditEvent.ActorType.CRON
PausedBy = Deployment.PausedBy


# --- Input ----------------------------------------------------------------------------------------------
def _clean_token(api_token) -> str:
    token = (api_token or "").strip() if isinstance(api_token, str) else ""
    if not TOKEN_RE.match(token):
        raise ServiceError("invalid", fields={"api_token": "Paste the Cloudflare API token as shown once by Cloudflare "
                                            "(20-200 letters, digits, - or _)."})
    return token


def _verify_or_reject(account_id: str, token: str) -> None:
    """Ask Cloudflare before anything is saved; a token it rejects never reaches the database."""
    try:
        with CloudflareClient(max_connections=1) as client:
            client.verify_token(account_id=account_id, token=token)
    except CloudflareError as exc:
        raise ServiceError(exc.code, fields={"api_token": exc.message}) from None


def _set_token(deployment: Deployment, token: str, now) -> None:
    deployment.api_token = token
    deployment.token_last4 = token[-4:]
    deployment.token_set_at = now


def _lock(deployment: Deployment | UUID | str) -> Deployment:
    pk = deployment.pk if isinstance(deployment, Deployment) else deployment
    return Deployment.objects.select_for_update().select_related("customer").get(pk=pk)


def deployment_save_status(d: Deployment, *fields: str) -> None:
    d.status = d.derived_status()
    d.save(update_fields=[*fields, "status", "updated_at"])


# --- Provisioning and token -----------------------------------------------------------------------------
def deployment_create(*, customer: Customer, account_id: str, script_name: str, api_token: str,
                      actor_type: str, actor: str = "") -> Deployment:
    """A deployment shell for a paying customer; the token is verified with Cloudflare before saving."""
    account_id = (account_id or "").strip().lower() if isinstance(account_id, str) else ""
    script_name = (script_name or "").strip() if isinstance(script_name, str) else ""
    errors = {}
    if not ACCOUNT_ID_RE.match(account_id):
        errors["account_id"] = "The Cloudflare account id is 32 hexadecimal characters (dash -> Account ID)."
    if not SCRIPT_NAME_RE.match(script_name):
        errors["script_name"] = "Use 1-63 lowercase letters, digits, - or _, starting with a letter or digit."
    try:
        token = _clean_token(api_token)
    except ServiceError as exc:
        errors.update(exc.fields)
        token = ""
    if not customer_entitlement(customer).entitled:
        errors["customer"] = "The customer has no paid, unlocked subscription."
    elif not plan_settings(customer.plan).get("managed_deployment"):
        errors["customer"] = f"The customer's plan ({customer.plan or '-'}) has no managed deployment."
    elif _free_slot(customer) is None:
        errors["customer"] = _limit_message(customer)
    if not errors.get("account_id") and not errors.get("script_name") and \
            Deployment.objects.filter(account_id=account_id, script_name=script_name).exists():
        errors["script_name"] = "This Cloudflare account already has a deployment with that script name."
    if errors:
        raise ServiceError("invalid", fields=errors)
    _verify_or_reject(account_id, token)
    release = release_latest_read()
    now = timezone.now()
    try:
        with transaction.atomic():
            # Lock the customer, then count: two concurrent creates wait here, the second sees the first.
            Customer.objects.select_for_update().only("pk").get(pk=customer.pk)
            slot = _free_slot(customer)
            if slot is None:
                raise ServiceError("deployment_limit", fields={"customer": _limit_message(customer)})
            deployment = Deployment(customer=customer, account_id=account_id, script_name=script_name, slot=slot)
            _set_token(deployment, token, now)
            deployment.save()
            audit_log(actor_type=actor_type, actor=actor, action="deployment.created", target=deployment, customer=customer,
                      data={"account_id": account_id, "script_name": script_name, "token_last4": deployment.token_last4})
            if release is not None:
                # The first push follows the connection at once instead of waiting for the hourly run.
                publish = _queue_publish(deployment, version=release.version, trigger=PublishVersion.Trigger.MANUAL,
                                         actor=f"{actor_type}:{actor}")
                audit_log(actor_type=actor_type, actor=actor, action="deployment.push_requested", target=deployment,
                          customer=customer, data={"publish": publish.number, "version": publish.version, "first": True})
                _run_after_commit(publish)
            # Kept on the Stripe subscription too, so rebuild_from_stripe can restore the shell after data loss.
            remember_on_stripe(customer=customer, values={STRIPE_ACCOUNT_KEY: account_id, STRIPE_SCRIPT_KEY: script_name})
    except IntegrityError as exc:
        if "deployment_one_per_customer_slot" in str(exc):
            raise ServiceError("deployment_limit", fields={"customer": _limit_message(customer)}) from None
        raise ServiceError("invalid", fields={"script_name": "This Cloudflare account already has a deployment with that script name."}) from None
    return deployment


def deployment_limit(customer: Customer) -> int:
    """How many managed deployments the customer's plan includes (PLANS[plan]["deployments"])."""
    plan = plan_settings(customer.plan)
    if not plan.get("managed_deployment"):
        return 0
    return max(0, int(plan.get("deployments", 1)))


def _free_slot(customer: Customer, *, limit: int | None = None) -> int | None:
    """The lowest slot number the customer does not use, within the plan's count (None: all taken)."""
    limit = deployment_limit(customer) if limit is None else limit
    used = set(Deployment.objects.filter(customer=customer).values_list("slot", flat=True))
    return next((n for n in range(1, limit + 1) if n not in used), None)


def _limit_message(customer: Customer) -> str:
    limit = deployment_limit(customer)
    name = plan_settings(customer.plan).get("name") or customer.plan
    return (f"Your {name} plan includes {limit} managed deployment{'s' if limit != 1 else ''} and "
            f"{'it is' if limit == 1 else 'they are'} already set up. Change the token or pause it on your "
            "subscription page; to move it to another Cloudflare account, contact support.")


def deployment_replace_account(*, deployment: Deployment, account_id: str, api_token: str, actor_type: str,
                               actor: str = "", reason: str = "") -> Deployment:
    """Support: move a deployment whose account id was mistyped to the right Cloudflare account. The new
    account's token is checked with Cloudflare first; the Worker there starts from nothing (the next run pushes)."""
    account_id = (account_id or "").strip().lower() if isinstance(account_id, str) else ""
    reason = (reason or "").strip()[:255] if isinstance(reason, str) else ""
    errors = {}
    if not ACCOUNT_ID_RE.match(account_id):
        errors["account_id"] = "The Cloudflare account id is 32 hexadecimal characters (dash -> Account ID)."
    elif account_id == deployment.account_id:
        errors["account_id"] = "That is the account id the deployment already has."
    try:
        token = _clean_token(api_token)
    except ServiceError as exc:
        errors.update(exc.fields)
        token = ""
    if not errors.get("account_id") and Deployment.objects.filter(
            account_id=account_id, script_name=deployment.script_name).exclude(pk=deployment.pk).exists():
        errors["account_id"] = "That Cloudflare account already has a deployment with this script name."
    if errors:
        raise ServiceError("invalid", fields=errors)
    _verify_or_reject(account_id, token)
    try:
        with transaction.atomic():
            d = _lock(deployment)
            if d.publishes.filter(status__in=PublishVersion.IN_FLIGHT).exists():
                raise ServiceError("push_in_progress", "A push of this deployment is in progress; try again when it has finished.")
            previous = {"account_id": d.account_id, "token_last4": d.token_last4}
            d.account_id = account_id
            _set_token(d, token, timezone.now())
            _clear_errors(d, rotated=True)
            d.current_version, d.rotation_due_at = "", None
            audit_log(actor_type=actor_type, actor=actor, action="deployment.account_replaced", target=d,
                      customer=d.customer, data={"old": previous, "new": {"account_id": account_id,
                                                                        "token_last4": d.token_last4},
                                                 "reason": reason})
            deployment_save_status(d, "account_id", "api_token_encrypted", "token_last4", "token_set_at", "current_version",
                  "rotation_due_at", *_CLEARED_FIELDS)
            remember_on_stripe(customer=d.customer, values={STRIPE_ACCOUNT_KEY: account_id,
                                                            STRIPE_SCRIPT_KEY: d.script_name})
    except IntegrityError:
        raise ServiceError("invalid", fields={"account_id": "That Cloudflare account already has a deployment with this script name."}) from None
    return d


def deployment_delete(*, deployment: Deployment, actor_type: str, actor: str = "", reason: str = "") -> None:
    """Support: remove a deployment (e.g. a mistyped account id, or one past the plan's count). The Worker
    in Cloudflare is left as it is; the console stops pushing to it and the customer may connect again."""
    reason = (reason or "").strip()[:255] if isinstance(reason, str) else ""
    if not reason:
        raise ServiceError("invalid", fields={"reason": "Say why the deployment is deleted (kept in the audit log)."})
    with transaction.atomic():
        d = _lock(deployment)
        if d.publishes.filter(status__in=PublishVersion.IN_FLIGHT).exists():
            raise ServiceError("push_in_progress", "A push of this deployment is in progress; try again when it has finished.")
        audit_log(actor_type=actor_type, actor=actor, action="deployment.deleted", target=d, customer=d.customer,
                  data={"account_id": d.account_id, "script_name": d.script_name, "token_last4": d.token_last4,
                        "current_version": d.current_version, "reason": reason})
        customer = d.customer
        d.delete()
        if not Deployment.objects.filter(customer=customer).exists():
            remember_on_stripe(customer=customer, values={STRIPE_ACCOUNT_KEY: "", STRIPE_SCRIPT_KEY: ""})


# --- Rebuild from Stripe (added for billing_console.ops.rebuild; see deployments/rebuild.py) ----------------
STRIPE_ACCOUNT_KEY = "cf_account_id"
STRIPE_SCRIPT_KEY = "cf_script_name"
SHELL_REASON = "Waiting for the Cloudflare API token (deployment restored from Stripe)."


def deployment_restore_shell(*, customer: Customer, account_id: str, script_name: str, actor_type: str,
                             actor: str = "") -> tuple[Deployment, bool]:
    """A deployment without a token, paused until the customer enters one (rotating the token
    resumes it). Returns (deployment, created); an existing one for the account and script is kept."""
    with transaction.atomic():
        existing = Deployment.objects.select_for_update().filter(account_id=account_id, script_name=script_name).first()
        if existing is not None:
            return existing, False
        Customer.objects.select_for_update().only("pk").get(pk=customer.pk)
        # What Stripe remembers is restored even past the plan's count; support deletes extras.
        slot = _free_slot(customer, limit=Deployment.objects.filter(customer=customer).count() + 1)
        deployment = Deployment(customer=customer, account_id=account_id, script_name=script_name, paused=True,
                                paused_by=PausedBy.NO_TOKEN, paused_reason=SHELL_REASON, paused_at=timezone.now(),
                                slot=slot)
        deployment.status = deployment.derived_status()
        deployment.save(force_insert=True)
        audit_log(actor_type=actor_type, actor=actor, action="deployment.restored_shell", target=deployment,
                  customer=customer, data={"account_id": account_id, "script_name": script_name})
    return deployment, True


def deployment_rotate_token(*, deployment: Deployment, api_token: str, actor_type: str, actor: str = "") -> Deployment:
    """Verify the new token with Cloudflare, store it, and clear the errors and any token stop; the next run pushes."""
    token = _clean_token(api_token)
    _verify_or_reject(deployment.account_id, token)
    with transaction.atomic():
        d = _lock(deployment)
        was_paused_by = d.paused_by
        _set_token(d, token, timezone.now())
        _clear_errors(d, rotated=True)
        due, d.rotation_due_at = d.rotation_due_at, None
        audit_log(actor_type=actor_type, actor=actor, action="deployment.token_rotated", target=d, customer=d.customer,
                  data={"token_last4": d.token_last4, "rotation_was_due": due.isoformat() if due else None,
                        "resumed_from": was_paused_by if was_paused_by and not d.paused else ""})
        deployment_save_status(d, "api_token_encrypted", "token_last4", "token_set_at", "rotation_due_at", *_CLEARED_FIELDS)
    return d


_CLEARED_FIELDS = ("last_error_code", "last_error_message", "last_error_at", "consecutive_failures",
                   "consecutive_auth_failures", "next_attempt_at", "paused", "paused_by", "paused_reason", "paused_at")


def _clear_errors(d: Deployment, *, rotated: bool = False) -> None:
    d.last_error_code, d.last_error_message, d.last_error_at = "", "", None
    d.consecutive_failures = d.consecutive_auth_failures = 0
    d.next_attempt_at = None
    # An overdue rotation lifts only with a new token: verifying the old one proves nothing.
    if d.waits_for_token or (rotated and d.paused and d.paused_by == PausedBy.ROTATION_OVERDUE):
        d.paused, d.paused_by, d.paused_reason, d.paused_at = False, PausedBy.NONE, "", None


def deployment_verify_token(*, deployment: Deployment, actor_type: str, actor: str = "") -> tuple[Deployment, CloudflareError | None]:
    """Check the stored token with Cloudflare. Valid: token errors and a token stop are cleared (a scope fixed
    in Cloudflare keeps the same token). Rejected: the error is recorded for support and the customer."""
    try:
        token = deployment.api_token
    except VaultError:
        token = ""
    error = None
    if not token:
        error = CloudflareError(ErrorCode.TOKEN_UNREADABLE, "No readable token is stored; ask the customer to rotate it.")
    else:
        try:
            with CloudflareClient(max_connections=1) as client:
                client.verify_token(account_id=deployment.account_id, token=token)
        except CloudflareError as exc:
            error = exc
    with transaction.atomic():
        d = _lock(deployment)
        if error is None:
            if d.last_error_code in AUTH_ERROR_CODES or d.last_error_code == ErrorCode.TOKEN_UNREADABLE or d.stopped_for_auth:
                _clear_errors(d)
            deployment_save_status(d, *_CLEARED_FIELDS)
        else:
            d.last_error_code, d.last_error_message, d.last_error_at = error.code, error.message, timezone.now()
            deployment_save_status(d, "last_error_code", "last_error_message", "last_error_at")
        audit_log(actor_type=actor_type, actor=actor, action="deployment.token_verified", target=d, customer=d.customer,
                  data={"ok": error is None, "error_code": error.code if error else ""})
    return d, error


# --- Pause / resume -------------------------------------------------------------------------------------
def deployment_pause(*, deployment: Deployment, actor_type: str, actor: str = "", reason: str = "",
                     by: str = PausedBy.MANUAL) -> Deployment:
    """A manual pause overrides an automatic one (payment returning must not undo it); an automatic pause
    never replaces an existing pause."""
    if by not in (PausedBy.MANUAL, PausedBy.CUSTOMER, PausedBy.AUTO_LOCK, PausedBy.AUTH_FAILURES,
                  PausedBy.ROTATION_OVERDUE):
        raise ServiceError("invalid", fields={"by": f"Unknown pause origin {by!r}."})
    reason = (reason or "").strip()[:255] if isinstance(reason, str) else ""
    with transaction.atomic():
        d = _lock(deployment)
        # Support's pause takes over any other; the customer's takes over only an automatic lock pause.
        takes_over = {PausedBy.MANUAL: d.paused_by != PausedBy.MANUAL,
                      PausedBy.CUSTOMER: d.paused_by == PausedBy.AUTO_LOCK}.get(by, False)
        if d.paused and not takes_over:
            return d
        previous = d.paused_by
        d.paused, d.paused_by, d.paused_reason, d.paused_at = True, by, reason, timezone.now()
        deployment_save_status(d, "paused", "paused_by", "paused_reason", "paused_at")
        audit_log(actor_type=actor_type, actor=actor, action="deployment.paused", target=d, customer=d.customer,
                  data={"by": by, "reason": reason, "was_paused_by": previous})
    return d


def deployment_resume(*, deployment: Deployment, actor_type: str, actor: str = "", by: str = PausedBy.MANUAL) -> Deployment:
    """Manual resume lifts a manual pause (or an automatic one whose lock is gone); automatic resume lifts
    only an automatic lock pause. A token stop lifts only with a rotated or verified token."""
    with transaction.atomic():
        d = _lock(deployment)
        if not d.paused:
            return d
        if by == PausedBy.AUTO_LOCK and d.paused_by != PausedBy.AUTO_LOCK:
            return d
        block = deployment_resume_block(d, by=by)
        if block and by == PausedBy.AUTO_LOCK:
            return d
        if block == ResumeBlock.SUPPORT:
            raise ServiceError("support_paused", "Support paused updates to this deployment; contact support to resume them.")
        if block == ResumeBlock.TOKEN_STOP:
            raise ServiceError("token_stopped", f"Stopped after {d.consecutive_auth_failures} token rejections: rotate or verify "
                                  "the Cloudflare token to resume.")
        if block == ResumeBlock.NO_TOKEN:
            raise ServiceError("no_token", "No Cloudflare token is stored yet: rotating the token resumes it.")
        if block == ResumeBlock.ROTATION_OVERDUE:
            raise ServiceError("rotation_overdue", "Paused because the Cloudflare token was not rotated in time: rotating "
                               "the token resumes it.")
        if block == ResumeBlock.ENDED:
            raise ServiceError("subscription_ended", "Paused because the subscription ended; a new subscription resumes it by itself.")
        if block:
            raise ServiceError("customer_locked", "Paused because the customer is hard locked for non-payment; "
                                  "it resumes by itself when payment returns.")
        previous = d.paused_by
        d.paused, d.paused_by, d.paused_reason, d.paused_at = False, PausedBy.NONE, "", None
        deployment_save_status(d, "paused", "paused_by", "paused_reason", "paused_at")
        audit_log(actor_type=actor_type, actor=actor, action="deployment.resumed", target=d, customer=d.customer,
                  data={"by": by, "was_paused_by": previous})
    return d


def deployments_sync_pauses(*, customer: Customer | None = None, actor_type: str = ACTOR_CRON,
                            actor: str = "push_deployments") -> dict[str, int]:
    """Pause the deployments of hard-locked or canceled customers, resume them when that ends. Driven by the
    entitlement selector on the customer row, so a lock dunning set without a Stripe event is seen too."""
    locked = (Q(customer__access_state__in=[Customer.AccessState.HARD_LOCKED, Customer.AccessState.CANCELED])
              | Q(customer__subscription_status__in=ENDED))
    qs = Deployment.objects.filter((Q(paused=False) & locked) | Q(paused=True, paused_by=PausedBy.AUTO_LOCK))
    if customer is not None:
        qs = qs.filter(customer=customer)
    counts = {"auto_paused": 0, "auto_resumed": 0}
    for d in qs.select_related("customer").only("id", "paused", "paused_by", "customer__access_state",
                                                 "customer__subscription_id", "customer__subscription_status",
                                                 "customer__plan", "customer__current_period_end",
                                                 "customer__collection_paused", "customer__dispute_open").iterator():
        lock = customer_lock_reason(d.customer)
        if lock and not d.paused:
            deployment_pause(deployment=d, actor_type=actor_type, actor=actor, by=PausedBy.AUTO_LOCK,
                             reason=f"Customer {lock.replace('_', ' ').lower()}")
            counts["auto_paused"] += 1
        elif not lock and d.paused and d.paused_by == PausedBy.AUTO_LOCK:
            deployment_resume(deployment=d, actor_type=actor_type, actor=actor, by=PausedBy.AUTO_LOCK)
            counts["auto_resumed"] += 1
    return counts


# --- Pinning, push now, requeue, rollback ---------------------------------------------------------------
def deployment_pin(*, deployment: Deployment, version: str, actor_type: str, actor: str = "") -> Deployment:
    """Pin to a known release (rolls this deployment back at the next run), or "" to follow the latest."""
    version = (version or "").strip() if isinstance(version, str) else ""
    if version and not BundleRelease.objects.filter(version=version).exists():
        raise ServiceError("invalid", fields={"version": f"No release {version[:64]!r} has been seen in the manifest."})
    with transaction.atomic():
        d = _lock(deployment)
        if d.pinned_version == version:
            return d
        previous, d.pinned_version = d.pinned_version, version
        deployment_save_status(d, "pinned_version")
        audit_log(actor_type=actor_type, actor=actor, action="deployment.pinned" if version else "deployment.unpinned",
                  target=d, customer=d.customer, data={"from": previous, "to": version})
    return d


def _queue_publish(d: Deployment, *, version: str, trigger: str, actor: str) -> PublishVersion:
    """Create a queued publish on a locked deployment, refusing what the push would refuse anyway."""
    if d.paused:
        raise ServiceError("paused", f"The deployment is paused ({d.get_paused_by_display()}); resume it first.")
    if not customer_entitlement(d.customer).entitled:
        raise ServiceError("not_entitled", "The customer is not entitled (no paid, unlocked subscription).")
    if not version:
        raise ServiceError("no_release", "No release to push: the manifest has not named one yet.")
    if not BundleRelease.objects.filter(version=version).exists():
        raise ServiceError("unknown_release", f"No release {version!r} has been seen in the manifest.")
    if d.publishes.filter(status__in=PublishVersion.IN_FLIGHT).exists():
        raise ServiceError("in_progress", "A push of this deployment is already in progress.")
    d.publish_seq += 1
    d.save(update_fields=["publish_seq", "updated_at"])
    return PublishVersion.objects.create(deployment=d, number=d.publish_seq, version=version, trigger=trigger, actor=actor[:255])


def _run_after_commit(publish: PublishVersion) -> None:
    transaction.on_commit(lambda: async_task("deployments.tasks.publish_run", publish.pk), robust=True)


def deployment_push_now(*, deployment: Deployment, actor_type: str, actor: str = "") -> PublishVersion:
    """Push the wanted version now, even if it is already live (e.g. the Worker was deleted in Cloudflare).
    The manifest is read first (outside the lock), so a release published since the last hourly run is pushed."""
    release = release_latest_read()
    with transaction.atomic():
        d = _lock(deployment)
        publish = _queue_publish(d, version=d.pinned_version or (release.version if release else ""),
                                 trigger=PublishVersion.Trigger.MANUAL, actor=f"{actor_type}:{actor}")
        audit_log(actor_type=actor_type, actor=actor, action="deployment.push_requested", target=d, customer=d.customer,
                  data={"publish": publish.number, "version": publish.version})
        _run_after_commit(publish)
    return publish


def publish_requeue(*, publish: PublishVersion, actor_type: str, actor: str = "") -> PublishVersion:
    """Push a failed publish's version again, as a new publish. Only the deployment's latest publish, so an
    old failure never overwrites a newer version."""
    with transaction.atomic():
        d = _lock(publish.deployment_id)
        publish = PublishVersion.objects.get(pk=publish.pk)
        if publish.status != PublishVersion.Status.FAILED:
            raise ServiceError("invalid_state", f"Publish #{publish.number} is {publish.get_status_display().lower()}, not failed.")
        if d.publishes.filter(number__gt=publish.number).exists():
            raise ServiceError("invalid_state", f"Publish #{publish.number} is not the latest publish of this deployment.")
        new = _queue_publish(d, version=publish.version, trigger=PublishVersion.Trigger.REQUEUE, actor=f"{actor_type}:{actor}")
        audit_log(actor_type=actor_type, actor=actor, action="publish.requeued", target=d, customer=d.customer,
                  data={"failed_publish": publish.number, "publish": new.number, "version": new.version})
        _run_after_commit(new)
    return new


def deployment_rollback(*, deployment: Deployment, number: int | None = None, version: str | None = None,
                        actor_type: str, actor: str = "") -> PublishVersion:
    """Roll back to an earlier publish number (or a release version): a new publish of that version with
    trigger rollback, and the deployment pinned to it so the hourly run does not undo it."""
    if (number is None) == (version is None):
        raise ServiceError("invalid", "Give either a publish number or a version.")
    if number is not None and (not isinstance(number, int) or isinstance(number, bool) or number < 1):
        raise ServiceError("invalid", fields={"number": "A publish number is a positive whole number."})
    with transaction.atomic():
        d = _lock(deployment)
        if number is not None:
            source = d.publishes.filter(number=number).only("version").first()
            if source is None:
                raise ServiceError("invalid", fields={"number": f"This deployment has no publish #{number}."})
            version = source.version
        version = (version or "").strip()
        publish = _queue_publish(d, version=version, trigger=PublishVersion.Trigger.ROLLBACK, actor=f"{actor_type}:{actor}")
        previous_pin, d.pinned_version = d.pinned_version, version
        deployment_save_status(d, "pinned_version")
        audit_log(actor_type=actor_type, actor=actor, action="deployment.rolled_back", target=d, customer=d.customer,
                  data={"to_number": number, "version": version, "publish": publish.number, "previous_pin": previous_pin})
        _run_after_commit(publish)
    return publish


def deployment_ids(values: Iterable) -> list[UUID]:
    """Parse deployment ids from a command line or form; a bad one is a ServiceError naming it."""
    ids = []
    for value in values:
        try:
            ids.append(UUID(str(value)))
        except ValueError:
            raise ServiceError("invalid", f"{str(value)[:60]!r} is not a deployment id (a UUID).") from None
    return ids
