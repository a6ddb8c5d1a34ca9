"""Every write of the deployments app: provisioning, token rotation, pause/resume, the push, requeue, rollback.

Each function owns its transaction, locks the row before deciding, returns early when already done and
audits in the same transaction. The push (`deployments_push`) claims each deployment in the database
(row lock + one unfinished PublishVersion per deployment, enforced by a constraint) so overlapping runs
or workers never push the same deployment twice; HTTP runs in a bounded thread pool while every
database write stays on the calling thread, in batches.
"""
from __future__ import annotations

import logging
import queue
import re
import time
from collections import Counter, deque
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import timedelta
from typing import Iterable, Iterator
from uuid import UUID

from django.conf import settings
from django.core.exceptions import ValidationError
from django.db import IntegrityError, transaction
from django.db.models import Case, F, Q, Value, When
from django.utils import timezone
from django_q.tasks import async_task

from billing_console.models import AuditEvent, Customer
from billing_console.rebuild import remember_on_stripe
from billing_console.selectors import ENDED_STATUSES, customer_entitlement, plan_settings
from billing_console.services import audit_log
from billing_console.vault import Keyring, VaultError, aad_for
from deployments.cloudflare import CloudflareClient, CloudflareError, PreparedUpload, prepare_upload
from deployments.manifest import Manifest, ManifestError, bundle_fetch, manifest_fetch
from deployments.models import AUTH_ERROR_CODES, BundleRelease, Deployment, ErrorCode, PublishVersion
from deployments.selectors import customer_lock_reason, deployments_due, latest_release

log = logging.getLogger("deployments")

ACCOUNT_ID_RE = re.compile(r"^[0-9a-f]{32}$")
SCRIPT_NAME_RE = re.compile(r"^[a-z0-9][a-z0-9_-]{0,62}$")
TOKEN_RE = re.compile(r"^[A-Za-z0-9_-]{20,200}$")
ACTOR_CRON = AuditEvent.ActorType.CRON
PausedBy = Deployment.PausedBy
PV = PublishVersion

CLAIM_BATCH = 200  # small enough that claiming never stalls the uploads in flight for long
FLUSH_EVERY = 200
FLUSH_SECONDS = 1.0
MAX_RATE_LIMIT_ATTEMPTS = 3


# --- Input ----------------------------------------------------------------------------------------------
def _clean_token(api_token) -> str:
    token = (api_token or "").strip() if isinstance(api_token, str) else ""
    if not TOKEN_RE.match(token):
        raise ValidationError({"api_token": "Paste the Cloudflare API token as shown once by Cloudflare "
                                            "(20-200 letters, digits, - or _)."})
    return token


def _verify_or_reject(account_id: str, token: str) -> None:
    """Ask Cloudflare before anything is saved; a token it rejects never reaches the database."""
    try:
        with CloudflareClient(max_connections=1) as client:
            client.verify_token(account_id=account_id, token=token)
    except CloudflareError as exc:
        raise ValidationError({"api_token": exc.message}, code=exc.code) from None


def _set_token(deployment: Deployment, token: str, now) -> None:
    deployment.api_token = token
    deployment.token_last4 = token[-4:]
    deployment.token_set_at = now


def _lock(deployment: Deployment | UUID | str) -> Deployment:
    pk = deployment.pk if isinstance(deployment, Deployment) else deployment
    return Deployment.objects.select_for_update().select_related("customer").get(pk=pk)


def _save(d: Deployment, *fields: str) -> None:
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
    except ValidationError as exc:
        errors.update(exc.message_dict)
        token = ""
    if not customer_entitlement(customer).entitled:
        errors["customer"] = "The customer has no paid, unlocked subscription."
    elif not plan_settings(customer.plan).get("managed_deployment"):
        errors["customer"] = f"The customer's plan ({customer.plan or '-'}) has no managed deployment."
    if not errors.get("account_id") and not errors.get("script_name") and \
            Deployment.objects.filter(account_id=account_id, script_name=script_name).exists():
        errors["script_name"] = "This Cloudflare account already has a deployment with that script name."
    if errors:
        raise ValidationError(errors)
    _verify_or_reject(account_id, token)
    now = timezone.now()
    try:
        with transaction.atomic():
            deployment = Deployment(customer=customer, account_id=account_id, script_name=script_name)
            _set_token(deployment, token, now)
            deployment.save()
            audit_log(actor_type=actor_type, actor=actor, action="deployment.created", target=deployment, customer=customer,
                      data={"account_id": account_id, "script_name": script_name, "token_last4": deployment.token_last4})
            # Kept on the Stripe subscription too, so rebuild_from_stripe can restore the shell after data loss.
            remember_on_stripe(customer=customer, values={STRIPE_ACCOUNT_KEY: account_id, STRIPE_SCRIPT_KEY: script_name})
    except IntegrityError:
        raise ValidationError({"script_name": "This Cloudflare account already has a deployment with that script name."}) from None
    return deployment


# --- Rebuild from Stripe (added for billing_console.rebuild; see deployments/rebuild.py) ----------------
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
        deployment = Deployment(customer=customer, account_id=account_id, script_name=script_name, paused=True,
                                paused_by=PausedBy.NO_TOKEN, paused_reason=SHELL_REASON, paused_at=timezone.now())
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
        _set_token(d, token, timezone.now())
        _clear_errors(d)
        audit_log(actor_type=actor_type, actor=actor, action="deployment.token_rotated", target=d, customer=d.customer,
                  data={"token_last4": d.token_last4})
        _save(d, "api_token_encrypted", "token_last4", "token_set_at", *_CLEARED_FIELDS)
    return d


_CLEARED_FIELDS = ("last_error_code", "last_error_message", "last_error_at", "consecutive_failures",
                   "consecutive_auth_failures", "next_attempt_at", "paused", "paused_by", "paused_reason", "paused_at")


def _clear_errors(d: Deployment) -> None:
    d.last_error_code, d.last_error_message, d.last_error_at = "", "", None
    d.consecutive_failures = d.consecutive_auth_failures = 0
    d.next_attempt_at = None
    if d.waits_for_token:
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
            _save(d, *_CLEARED_FIELDS)
        else:
            d.last_error_code, d.last_error_message, d.last_error_at = error.code, error.message, timezone.now()
            _save(d, "last_error_code", "last_error_message", "last_error_at")
        audit_log(actor_type=actor_type, actor=actor, action="deployment.token_verified", target=d, customer=d.customer,
                  data={"ok": error is None, "error_code": error.code if error else ""})
    return d, error


# --- Pause / resume -------------------------------------------------------------------------------------
def deployment_pause(*, deployment: Deployment, actor_type: str, actor: str = "", reason: str = "",
                     by: str = PausedBy.MANUAL) -> Deployment:
    """A manual pause overrides an automatic one (payment returning must not undo it); an automatic pause
    never replaces an existing pause."""
    if by not in (PausedBy.MANUAL, PausedBy.CUSTOMER, PausedBy.AUTO_LOCK, PausedBy.AUTH_FAILURES):
        raise ValidationError({"by": f"Unknown pause origin {by!r}."})
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
        _save(d, "paused", "paused_by", "paused_reason", "paused_at")
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
        if by == PausedBy.CUSTOMER and d.paused_by == PausedBy.MANUAL:
            raise ValidationError("Support paused updates to this deployment; contact support to resume them.")
        if d.paused_by == PausedBy.AUTH_FAILURES:
            raise ValidationError(f"Stopped after {d.consecutive_auth_failures} token rejections: rotate or verify "
                                  "the Cloudflare token to resume.")
        if d.paused_by == PausedBy.NO_TOKEN:
            raise ValidationError("No Cloudflare token is stored yet: rotating the token resumes it.")
        lock = customer_lock_reason(d.customer)
        if d.paused_by == PausedBy.AUTO_LOCK and lock:
            if by == PausedBy.AUTO_LOCK:
                return d
            raise ValidationError(f"Paused because the customer is {lock.replace('_', ' ').lower()}; "
                                  "it resumes by itself when payment returns.")
        previous = d.paused_by
        d.paused, d.paused_by, d.paused_reason, d.paused_at = False, PausedBy.NONE, "", None
        _save(d, "paused", "paused_by", "paused_reason", "paused_at")
        audit_log(actor_type=actor_type, actor=actor, action="deployment.resumed", target=d, customer=d.customer,
                  data={"by": by, "was_paused_by": previous})
    return d


def deployments_sync_pauses(*, customer: Customer | None = None, actor_type: str = ACTOR_CRON,
                            actor: str = "push_deployments") -> dict[str, int]:
    """Pause the deployments of hard-locked or canceled customers, resume them when that ends. Driven by the
    entitlement selector on the customer row, so a lock dunning set without a Stripe event is seen too."""
    locked = (Q(customer__access_state__in=[Customer.AccessState.HARD_LOCKED, Customer.AccessState.CANCELED])
              | Q(customer__subscription_status__in=ENDED_STATUSES))
    qs = Deployment.objects.filter((Q(paused=False) & locked) | Q(paused=True, paused_by=PausedBy.AUTO_LOCK))
    if customer is not None:
        qs = qs.filter(customer=customer)
    counts = {"auto_paused": 0, "auto_resumed": 0}
    for d in qs.select_related("customer").only("id", "paused", "paused_by", "customer__access_state",
                                                 "customer__subscription_id", "customer__subscription_status",
                                                 "customer__plan", "customer__current_period_end").iterator():
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
        raise ValidationError({"version": f"No release {version[:64]!r} has been seen in the manifest."})
    with transaction.atomic():
        d = _lock(deployment)
        if d.pinned_version == version:
            return d
        previous, d.pinned_version = d.pinned_version, version
        _save(d, "pinned_version")
        audit_log(actor_type=actor_type, actor=actor, action="deployment.pinned" if version else "deployment.unpinned",
                  target=d, customer=d.customer, data={"from": previous, "to": version})
    return d


def _queue_publish(d: Deployment, *, version: str, trigger: str, actor: str) -> PublishVersion:
    """Create a queued publish on a locked deployment, refusing what the push would refuse anyway."""
    if d.paused:
        raise ValidationError(f"The deployment is paused ({d.get_paused_by_display()}); resume it first.")
    if not customer_entitlement(d.customer).entitled:
        raise ValidationError("The customer is not entitled (no paid, unlocked subscription).")
    if not version:
        raise ValidationError("No release to push: the manifest has not named one yet.")
    if not BundleRelease.objects.filter(version=version).exists():
        raise ValidationError(f"No release {version!r} has been seen in the manifest.")
    if d.publishes.filter(status__in=PV.IN_FLIGHT).exists():
        raise ValidationError("A push of this deployment is already in progress.")
    d.publish_seq += 1
    d.save(update_fields=["publish_seq", "updated_at"])
    return PV.objects.create(deployment=d, number=d.publish_seq, version=version, trigger=trigger, actor=actor[:255])


def _run_after_commit(publish: PublishVersion) -> None:
    transaction.on_commit(lambda: async_task("deployments.tasks.publish_run", publish.pk), robust=True)


def deployment_push_now(*, deployment: Deployment, actor_type: str, actor: str = "") -> PublishVersion:
    """Push the wanted version now, even if it is already live (e.g. the Worker was deleted in Cloudflare)."""
    release = latest_release()
    with transaction.atomic():
        d = _lock(deployment)
        publish = _queue_publish(d, version=d.pinned_version or (release.version if release else ""),
                                 trigger=PV.Trigger.MANUAL, actor=f"{actor_type}:{actor}")
        audit_log(actor_type=actor_type, actor=actor, action="deployment.push_requested", target=d, customer=d.customer,
                  data={"publish": publish.number, "version": publish.version})
        _run_after_commit(publish)
    return publish


def publish_requeue(*, publish: PublishVersion, actor_type: str, actor: str = "") -> PublishVersion:
    """Push a failed publish's version again, as a new publish. Only the deployment's latest publish, so an
    old failure never overwrites a newer version."""
    with transaction.atomic():
        d = _lock(publish.deployment_id)
        publish = PV.objects.get(pk=publish.pk)
        if publish.status != PV.Status.FAILED:
            raise ValidationError(f"Publish #{publish.number} is {publish.get_status_display().lower()}, not failed.")
        if d.publishes.filter(number__gt=publish.number).exists():
            raise ValidationError(f"Publish #{publish.number} is not the latest publish of this deployment.")
        new = _queue_publish(d, version=publish.version, trigger=PV.Trigger.REQUEUE, actor=f"{actor_type}:{actor}")
        audit_log(actor_type=actor_type, actor=actor, action="publish.requeued", target=d, customer=d.customer,
                  data={"failed_publish": publish.number, "publish": new.number, "version": new.version})
        _run_after_commit(new)
    return new


def deployment_rollback(*, deployment: Deployment, number: int | None = None, version: str | None = None,
                        actor_type: str, actor: str = "") -> PublishVersion:
    """Roll back to an earlier publish number (or a release version): a new publish of that version with
    trigger rollback, and the deployment pinned to it so the hourly run does not undo it."""
    if (number is None) == (version is None):
        raise ValidationError("Give either a publish number or a version.")
    if number is not None and (not isinstance(number, int) or isinstance(number, bool) or number < 1):
        raise ValidationError({"number": "A publish number is a positive whole number."})
    with transaction.atomic():
        d = _lock(deployment)
        if number is not None:
            source = d.publishes.filter(number=number).only("version").first()
            if source is None:
                raise ValidationError({"number": f"This deployment has no publish #{number}."})
            version = source.version
        version = (version or "").strip()
        publish = _queue_publish(d, version=version, trigger=PV.Trigger.ROLLBACK, actor=f"{actor_type}:{actor}")
        previous_pin, d.pinned_version = d.pinned_version, version
        _save(d, "pinned_version")
        audit_log(actor_type=actor_type, actor=actor, action="deployment.rolled_back", target=d, customer=d.customer,
                  data={"to_number": number, "version": version, "publish": publish.number, "previous_pin": previous_pin})
        _run_after_commit(publish)
    return publish


# --- Releases -------------------------------------------------------------------------------------------
def release_record(manifest: Manifest) -> BundleRelease:
    """Remember the release the manifest names and make it the latest. A version whose sha256 changed is refused:
    a release is immutable, so a new hash under an old name is a tampered or botched publish."""
    now = timezone.now()
    with transaction.atomic():
        release, created = BundleRelease.objects.select_for_update().get_or_create(
            version=manifest.version,
            defaults={"bundle_url": manifest.bundle_url, "sha256": manifest.sha256, "size": manifest.size, "last_seen_at": now})
        if not created:
            if release.sha256 != manifest.sha256:
                raise ManifestError(f"Release {manifest.version} was seen before with sha256 {release.sha256[:12]}..., "
                                    f"the manifest now says {manifest.sha256[:12]}...; not pushed.")
            release.bundle_url, release.size, release.last_seen_at = manifest.bundle_url, manifest.size, now
            release.save(update_fields=["bundle_url", "size", "last_seen_at"])
    return release


class Bundles:
    """Verified bundles per version for one run, as ready-to-send uploads (fetched, checked and encoded once;
    a failure is remembered too)."""

    def __init__(self, manifest: Manifest | None = None):
        self._data: dict[str, PreparedUpload | ManifestError] = {}
        self._manifest = manifest  # a dry run reads the manifest's release without recording it

    def get(self, version: str) -> PreparedUpload:
        if version not in self._data:
            try:
                if self._manifest is not None and self._manifest.version == version:
                    release = self._manifest
                else:
                    release = BundleRelease.objects.filter(version=version).first()
                if release is None:
                    raise ManifestError(f"Release {version} has never been named by the manifest.")
                self._data[version] = prepare_upload(
                    bundle_fetch(version=version, bundle_url=release.bundle_url, sha256=release.sha256))
            except ManifestError as exc:
                self._data[version] = exc
        value = self._data[version]
        if isinstance(value, ManifestError):
            raise value
        return value


# --- The push -------------------------------------------------------------------------------------------
@dataclass
class PushReport:
    counts: Counter = field(default_factory=lambda: Counter(
        {"due": 0, "pushed": 0, "failed": 0, "skipped_claimed": 0, "skipped_bundle": 0, "errors": 0}))
    problems: list[str] = field(default_factory=list)
    would_push: list[tuple[str, str, str]] = field(default_factory=list)  # dry run: (deployment, from, to)

    @property
    def summary(self) -> str:
        return "\n".join(self.problems)


@dataclass
class _Job:
    publish_id: int
    deployment_id: UUID
    number: int
    account_id: str
    script_name: str
    version: str
    trigger: str
    upload: PreparedUpload = field(repr=False)
    token: str = field(repr=False)


@dataclass
class _Outcome:
    publish_id: int
    deployment_id: UUID
    version: str
    trigger: str
    error: CloudflareError | None = None


def publish_fail_stale(*, now=None) -> int:
    """Publishes left unfinished by a crashed worker fail as interrupted; the next run pushes again."""
    now = now or timezone.now()
    stale = now - timedelta(minutes=settings.DEPLOY_PUBLISH_STALE_MINUTES)
    return PV.objects.filter(status__in=PV.IN_FLIGHT, created_at__lt=stale).update(
        status=PV.Status.FAILED, error_code=ErrorCode.INTERRUPTED, completed_at=now,
        error_message="The push did not finish (worker stopped or timed out); it is retried by the next run.")


def deployments_push(*, deployment_ids: list | None = None, dry_run: bool = False, concurrency: int | None = None,
                     client: CloudflareClient | None = None) -> PushReport:
    """The hourly push: reconcile automatic pauses, read the manifest, verify the bundles, then claim and push
    every due deployment with bounded concurrency. One failure never stops the others."""
    report = PushReport()
    if not dry_run:
        report.counts["interrupted"] = publish_fail_stale()
        report.counts.update(deployments_sync_pauses())
    latest, manifest = "", None
    try:
        manifest = manifest_fetch()
        if not dry_run:
            release_record(manifest)
        latest = manifest.version
    except ManifestError as exc:
        # Deployments pinned to a known release are still pushed; nobody follows a manifest we cannot trust.
        report.problems.append(f"Manifest: {exc}")
        report.counts["errors"] += 1
    report.counts["latest"] = latest
    due = deployments_due(latest_version=latest, ids=deployment_ids)
    report.counts["due"] = len(due)
    bundles = Bundles(manifest if dry_run else None)
    bad_versions = set()
    for version in sorted({v for _, v in due}):
        try:
            bundles.get(version)
        except ManifestError as exc:
            bad_versions.add(version)
            report.problems.append(str(exc))
            report.counts["errors"] += 1
    if bad_versions:
        skipped = [item for item in due if item[1] in bad_versions]
        report.counts["skipped_bundle"] = len(skipped)
        due = [item for item in due if item[1] not in bad_versions]
    if dry_run:
        current = dict(Deployment.objects.filter(pk__in=[pk for pk, _ in due]).values_list("pk", "current_version"))
        report.would_push = [(str(pk), current.get(pk, ""), version) for pk, version in due]
        return report
    concurrency = max(1, concurrency or settings.DEPLOY_PUSH_CONCURRENCY)
    own_client = client is None
    client = client or CloudflareClient(max_connections=concurrency)
    try:
        _run_publishes(_claim_batches(due, latest, report), bundles=bundles, client=client,
                       concurrency=concurrency, report=report)
    finally:
        if own_client:
            client.close()
    return report


def _claim_batches(due: list[tuple[UUID, str]], latest: str, report: PushReport) -> Iterator[list[int]]:
    for start in range(0, len(due), CLAIM_BATCH):
        batch = due[start:start + CLAIM_BATCH]
        ids = _claim(batch, latest)
        report.counts["skipped_claimed"] += len(batch) - len(ids)
        if ids:
            yield ids


def _claim(batch: list[tuple[UUID, str]], latest: str) -> list[int]:
    """Lock the batch's deployments (skipping rows another run holds), re-check them, and create their queued
    publishes. The open publish is the claim: a constraint allows one per deployment, and nobody else pushes it."""
    with transaction.atomic():
        rows = (Deployment.objects.select_for_update(skip_locked=True)
                .filter(pk__in=[pk for pk, _ in batch], paused=False)
                .exclude(pk__in=PV.objects.filter(status__in=PV.IN_FLIGHT).values("deployment_id"))
                .values_list("id", "publish_seq", "pinned_version", "current_version"))
        publishes = []
        for pk, seq, pinned, current in rows:
            wanted = pinned or latest
            if wanted and wanted != current:
                publishes.append(PV(deployment_id=pk, number=seq + 1, version=wanted,
                                    trigger=PV.Trigger.CRON, actor="cron:push_deployments"))
        if not publishes:
            return []
        Deployment.objects.filter(pk__in=[p.deployment_id for p in publishes]).update(publish_seq=F("publish_seq") + 1)
        PV.objects.bulk_create(publishes)
    return [p.pk for p in publishes]


def publish_execute(*, publish_id: int, client: CloudflareClient | None = None) -> PushReport:
    """Run one queued publish (push now, requeue, rollback); a publish already taken is left alone."""
    report = PushReport()
    own_client = client is None
    client = client or CloudflareClient(max_connections=1)
    try:
        _run_publishes(iter([[publish_id]]), bundles=Bundles(), client=client, concurrency=1, report=report)
    finally:
        if own_client:
            client.close()
    return report


def _prepare(publish_ids: list[int], bundles: Bundles, outcomes: list[_Outcome]) -> list[_Job]:
    """queued -> building (bundle and token ready) -> deploying. Taking a publish out of `queued` is the
    conditional claim, so a publish runs once even if two workers get the same id."""
    now = timezone.now()
    with transaction.atomic():
        # Plain tuples, not model instances: this runs for every push, on the thread that also feeds the pool.
        publishes = list(PV.objects.select_for_update(skip_locked=True, of=("self",))
                         .filter(pk__in=publish_ids, status=PV.Status.QUEUED)
                         .values_list("id", "number", "version", "trigger", "deployment_id", "deployment__account_id",
                                      "deployment__script_name", "deployment__api_token_encrypted"))
        PV.objects.filter(pk__in=[p[0] for p in publishes]).update(status=PV.Status.BUILDING, started_at=now)
    keyring = Keyring.from_settings() if publishes else None
    jobs = []
    for publish_id, number, version, trigger, deployment_id, account_id, script_name, ciphertext in publishes:
        outcome = _Outcome(publish_id, deployment_id, version, trigger)
        try:
            upload = bundles.get(version)
        except ManifestError as exc:
            outcome.error = CloudflareError(ErrorCode.BUNDLE_UNAVAILABLE, str(exc))
            outcomes.append(outcome)
            continue
        try:
            # The same associated data the Secret descriptor binds: this row's id and column.
            token = keyring.decrypt(ciphertext, aad_for(Deployment(id=deployment_id), "api_token_encrypted")) if ciphertext else ""
        except VaultError:
            token = ""
        if not token:
            outcome.error = CloudflareError(ErrorCode.TOKEN_UNREADABLE,
                                            "The stored Cloudflare token cannot be read; rotate the token.")
            outcomes.append(outcome)
            continue
        jobs.append(_Job(publish_id, deployment_id, number, account_id, script_name, version, trigger, upload, token))
    PV.objects.filter(pk__in=[j.publish_id for j in jobs], status=PV.Status.BUILDING).update(status=PV.Status.DEPLOYING)
    return jobs


def _push_one(client: CloudflareClient, job: _Job) -> CloudflareError | None:
    """Runs in a pool thread: HTTP only, no database. A short Retry-After is waited out and retried."""
    for attempt in range(1, MAX_RATE_LIMIT_ATTEMPTS + 1):
        try:
            client.upload_script(account_id=job.account_id, script_name=job.script_name, token=job.token, upload=job.upload)
            return None
        except CloudflareError as exc:
            retry_after = exc.retry_after
            if (exc.code != ErrorCode.RATE_LIMITED or attempt == MAX_RATE_LIMIT_ATTEMPTS or retry_after is None
                    or retry_after > settings.DEPLOY_RETRY_AFTER_MAX_SECONDS):
                return exc
            time.sleep(retry_after)
    return None  # pragma: no cover - the loop always returns


def _run_publishes(batches: Iterator[list[int]], *, bundles: Bundles, client: CloudflareClient, concurrency: int,
                   report: PushReport) -> None:
    """Keep `concurrency` uploads in flight; claim more publishes as the queue runs low; write outcomes in
    batches (every FLUSH_EVERY outcomes or FLUSH_SECONDS) from this thread.

    The pool's own queue holds up to CLAIM_BATCH jobs beyond the `concurrency` running ones, so its threads
    keep uploading while this thread claims and prepares the next batch (which takes a database round trip
    and a decryption per token); Cloudflare still sees at most `concurrency` requests at once."""
    ready: deque[_Job] = deque()
    outcomes: list[_Outcome] = []
    done: queue.SimpleQueue = queue.SimpleQueue()
    pending = 0
    backlog = concurrency + CLAIM_BATCH
    exhausted = False
    last_flush = time.monotonic()
    with ThreadPoolExecutor(max_workers=concurrency, thread_name_prefix="push") as pool:

        def submit():
            nonlocal pending
            while ready and pending < backlog:
                job = ready.popleft()
                pool.submit(_push_one, client, job).add_done_callback(lambda f, job=job: done.put((job, f)))
                pending += 1

        while True:
            if pending:
                try:
                    finished_jobs = [done.get(timeout=FLUSH_SECONDS)]
                except queue.Empty:
                    finished_jobs = []
                while not done.empty():
                    finished_jobs.append(done.get())
                for job, future in finished_jobs:
                    pending -= 1
                    outcomes.append(_Outcome(job.publish_id, job.deployment_id, job.version, job.trigger, future.result()))
            submit()
            # Claim more only when the backlog runs low, and only after the pool's queue is topped up again.
            while not exhausted and len(ready) + pending < backlog:
                batch = next(batches, None)
                if batch is None:
                    exhausted = True
                else:
                    ready.extend(_prepare(batch, bundles, outcomes))
                    submit()
            finished = exhausted and not ready and not pending
            if outcomes and (finished or len(outcomes) >= FLUSH_EVERY or time.monotonic() - last_flush >= FLUSH_SECONDS):
                _record(outcomes, report)
                outcomes = []
                last_flush = time.monotonic()
            if finished:
                return


def _record(outcomes: list[_Outcome], report: PushReport) -> None:
    """Write a batch of outcomes: successes set-based, failures row by row (they are few and differ)."""
    now = timezone.now()
    ok = [o for o in outcomes if o.error is None]
    with transaction.atomic():
        for rollback, status in ((False, PV.Status.SUPERSEDED), (True, PV.Status.ROLLED_BACK)):
            group = [o for o in ok if (o.trigger == PV.Trigger.ROLLBACK) == rollback]
            if group:
                PV.objects.filter(deployment_id__in=[o.deployment_id for o in group], status=PV.Status.LIVE).update(status=status)
        if ok:
            PV.objects.filter(pk__in=[o.publish_id for o in ok]).update(status=PV.Status.LIVE, completed_at=now)
        for version in {o.version for o in ok}:
            Deployment.objects.filter(pk__in=[o.deployment_id for o in ok if o.version == version]).update(
                current_version=version, last_push_at=now, last_error_code="", last_error_message="", last_error_at=None,
                consecutive_failures=0, consecutive_auth_failures=0, next_attempt_at=None, updated_at=now,
                status=Case(When(Q(paused=True) & ~Q(paused_by=PausedBy.AUTH_FAILURES), then=Value(Deployment.Status.PAUSED)),
                            default=Value(Deployment.Status.ACTIVE)))
        for o in outcomes:
            if o.error is not None:
                _record_failure(o, now)
    report.counts["pushed"] += len(ok)
    report.counts["failed"] += len(outcomes) - len(ok)
    for o in outcomes:
        if o.error is not None:
            report.counts[f"failed_{o.error.code}"] += 1


def _record_failure(o: _Outcome, now) -> None:
    err = o.error
    PV.objects.filter(pk=o.publish_id).update(status=PV.Status.FAILED, error_code=err.code,
                                              error_message=err.message[:2000], completed_at=now)
    d = Deployment.objects.select_for_update().select_related("customer").get(pk=o.deployment_id)
    d.last_error_code, d.last_error_message, d.last_error_at = err.code, err.message[:2000], now
    d.consecutive_failures += 1
    fields = ["last_error_code", "last_error_message", "last_error_at", "consecutive_failures"]
    if err.code in AUTH_ERROR_CODES:
        d.consecutive_auth_failures += 1
        fields.append("consecutive_auth_failures")
    if err.code == ErrorCode.RATE_LIMITED and err.retry_after:
        d.next_attempt_at = now + timedelta(seconds=err.retry_after)
        fields.append("next_attempt_at")
    stop = (err.code in AUTH_ERROR_CODES and not d.paused
            and d.consecutive_auth_failures >= settings.DEPLOY_MAX_AUTH_FAILURES)
    if stop:
        d.paused, d.paused_by, d.paused_at = True, PausedBy.AUTH_FAILURES, now
        d.paused_reason = f"Token rejected {d.consecutive_auth_failures} times in a row ({err.code}); rotate it to resume."
        fields += ["paused", "paused_by", "paused_reason", "paused_at"]
    _save(d, *fields)
    if stop:
        audit_log(actor_type=ACTOR_CRON, actor="push", action="deployment.stopped_auth_failures", target=d,
                  customer=d.customer, data={"error_code": err.code, "failures": d.consecutive_auth_failures})
    log.warning("push failed: deployment %s publish %s version %s: %s", o.deployment_id, o.publish_id, o.version, err.code,
                extra={"event": "push_failed", "deployment": str(o.deployment_id), "error_code": err.code,
                       "version": o.version})


def deployment_ids(values: Iterable) -> list[UUID]:
    """Parse deployment ids from a command line or form; a bad one is a ValidationError naming it."""
    ids = []
    for value in values:
        try:
            ids.append(UUID(str(value)))
        except ValueError:
            raise ValidationError(f"{str(value)[:60]!r} is not a deployment id (a UUID).") from None
    return ids
