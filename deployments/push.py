"""The push engine: claim due deployments and push their release to Cloudflare.

The push (`deployments_push`) claims each deployment in the database (row lock + one unfinished
PublishVersion per deployment, enforced by a constraint) so overlapping runs or workers never push the
same deployment twice; HTTP runs in a bounded thread pool while every database write stays on the
calling thread, in batches.
"""
from __future__ import annotations

import logging
import queue
import time
from collections import Counter, deque
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import timedelta
from typing import Iterator
from uuid import UUID

from django.conf import settings
from django.db import transaction
from django.db.models import Case, F, Q, Value, When
from django.utils import timezone

from billing_console.services import audit_log
from billing_console.vault import Keyring, VaultError, aad_for
from deployments.cloudflare import CloudflareClient, CloudflareError, PreparedUpload
from deployments.manifest import ManifestError, manifest_fetch
from deployments.models import AUTH_ERROR_CODES, Deployment, ErrorCode, PublishVersion
from deployments.releases import Bundles, release_record
from deployments.selectors import deployments_due
from deployments.rotation import deployments_enforce_rotation_deadline
from deployments.services import ACTOR_CRON, PausedBy, deployment_save_status, deployments_sync_pauses

log = logging.getLogger("deployments")


CLAIM_BATCH = 200  # small enough that claiming never stalls the uploads in flight for long
FLUSH_EVERY = 200
FLUSH_SECONDS = 1.0
MAX_RATE_LIMIT_ATTEMPTS = 3

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
    return PublishVersion.objects.filter(status__in=PublishVersion.IN_FLIGHT, created_at__lt=stale).update(
        status=PublishVersion.Status.FAILED, error_code=ErrorCode.INTERRUPTED, completed_at=now,
        error_message="The push did not finish (worker stopped or timed out); it is retried by the next run.")


def deployments_push(*, deployment_ids: list | None = None, dry_run: bool = False, concurrency: int | None = None,
                     client: CloudflareClient | None = None) -> PushReport:
    """The hourly push: reconcile automatic pauses, read the manifest, verify the bundles, then claim and push
    every due deployment with bounded concurrency. One failure never stops the others."""
    report = PushReport()
    if not dry_run:
        report.counts["interrupted"] = publish_fail_stale()
        report.counts.update(deployments_sync_pauses())
        # An overdue rotation pauses before this run pushes with a token that may have leaked.
        report.counts["rotation_paused"] = deployments_enforce_rotation_deadline()["paused"]
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
                .exclude(pk__in=PublishVersion.objects.filter(status__in=PublishVersion.IN_FLIGHT).values("deployment_id"))
                .values_list("id", "publish_seq", "pinned_version", "current_version"))
        publishes = []
        for pk, seq, pinned, current in rows:
            wanted = pinned or latest
            if wanted and wanted != current:
                publishes.append(PublishVersion(deployment_id=pk, number=seq + 1, version=wanted,
                                    trigger=PublishVersion.Trigger.CRON, actor="cron:push_deployments"))
        if not publishes:
            return []
        Deployment.objects.filter(pk__in=[p.deployment_id for p in publishes]).update(publish_seq=F("publish_seq") + 1)
        PublishVersion.objects.bulk_create(publishes)
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
        publishes = list(PublishVersion.objects.select_for_update(skip_locked=True, of=("self",))
                         .filter(pk__in=publish_ids, status=PublishVersion.Status.QUEUED)
                         .values_list("id", "number", "version", "trigger", "deployment_id", "deployment__account_id",
                                      "deployment__script_name", "deployment__api_token_encrypted"))
        PublishVersion.objects.filter(pk__in=[p[0] for p in publishes]).update(status=PublishVersion.Status.BUILDING, started_at=now)
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
    PublishVersion.objects.filter(pk__in=[j.publish_id for j in jobs], status=PublishVersion.Status.BUILDING).update(status=PublishVersion.Status.DEPLOYING)
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
        for rollback, status in ((False, PublishVersion.Status.SUPERSEDED), (True, PublishVersion.Status.ROLLED_BACK)):
            group = [o for o in ok if (o.trigger == PublishVersion.Trigger.ROLLBACK) == rollback]
            if group:
                PublishVersion.objects.filter(deployment_id__in=[o.deployment_id for o in group], status=PublishVersion.Status.LIVE).update(status=status)
        if ok:
            PublishVersion.objects.filter(pk__in=[o.publish_id for o in ok]).update(status=PublishVersion.Status.LIVE, completed_at=now)
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
    PublishVersion.objects.filter(pk=o.publish_id).update(status=PublishVersion.Status.FAILED, error_code=err.code,
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
    deployment_save_status(d, *fields)
    if stop:
        audit_log(actor_type=ACTOR_CRON, actor="push", action="deployment.stopped_auth_failures", target=d,
                  customer=d.customer, data={"error_code": err.code, "failures": d.consecutive_auth_failures})
    log.warning("push failed: deployment %s publish %s version %s: %s", o.deployment_id, o.publish_id, o.version, err.code,
                extra={"event": "push_failed", "deployment": str(o.deployment_id), "error_code": err.code,
                       "version": o.version})
