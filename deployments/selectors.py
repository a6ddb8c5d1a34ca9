"""Reads shared by the push, the admin, the health endpoint and the customer pages."""
from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from uuid import UUID

from django.db.models import Case, CharField, Count, F, Q, QuerySet, Value, When
from django.utils import timezone

from billing_console.models import CronRun, Customer
from billing_console.ops.health import config_flags
from billing_console.selectors import Entitlement, Reason, customer_entitlement
from billing_console.stripe.statuses import ENDED as ENDED_STATUSES
from deployments.models import BundleRelease, Deployment, PublishVersion
from billing_console.wording import counted
from billing_console.wording.deployment import deployment_updates_stopped
from billing_console.wording.subscription import SubscriptionCopy, subscription_copy

PUSH_CRON = "push_deployments"
LOCK_REASONS = {Reason.HARD_LOCKED, Reason.CANCELED}


def latest_release() -> BundleRelease | None:
    """The release the manifest named most recently (pinning the manifest URL back makes an old one latest)."""
    return BundleRelease.objects.filter(last_seen_at__isnull=False).order_by("-last_seen_at").first()


def customer_updates_stopped(customer: Customer, *, ent: Entitlement | None = None,
                             copy: SubscriptionCopy | None = None) -> str:
    """Why the hourly push skips this customer's deployments, in the subscription's words ("" when entitled).
    No query: the words need only the customer row (and `copy`, when the caller already has it)."""
    ent = ent or customer_entitlement(customer)
    if ent.entitled:
        return ""
    copy = copy or subscription_copy(customer, invoices=[], ent=ent, price_lookup=False)
    return deployment_updates_stopped(copy, ent)


def deployment_updates_words(deployment: Deployment) -> str:
    """What support reads beside a deployment (change page, customer page): the subscription's words when the
    push skips the customer, the same the customer reads; else the pause; else that the hourly push serves it.
    Reads `deployment.customer`: select it with the deployment."""
    stopped = customer_updates_stopped(deployment.customer)
    pause = ""
    if deployment.paused and not (stopped and deployment.paused_by == Deployment.PausedBy.AUTO_LOCK):
        pause = f"Paused ({deployment.get_paused_by_display()})" + (
            f": {deployment.paused_reason}" if deployment.paused_reason else "") + "."
    if stopped:
        return f"{stopped} {pause}".strip()
    return pause or "Updated by the hourly push."


def customer_lock_reason(customer: Customer) -> str:
    """HARD_LOCKED or CANCELED when the customer's deployments must be paused automatically, else ""."""
    reason = customer_entitlement(customer).reason
    return reason if reason in LOCK_REASONS else ""


# The customer's own pause origin where the model separates it from support's ("manual" otherwise).
CUSTOMER_ORIGIN = getattr(Deployment.PausedBy, "CUSTOMER", Deployment.PausedBy.MANUAL)


class ResumeBlock:
    """Why a resume would be refused; the service raises on it and the manage page hides its button on it."""
    NONE = ""
    TOKEN_STOP = "token_stop"  # stopped after repeated token rejections: a rotated or verified token resumes it
    NO_TOKEN = "no_token"  # restored without a token: storing one resumes it
    LOCKED = "locked"  # automatic pause of a hard-locked customer: payment resumes it
    ENDED = "ended"  # automatic pause of a canceled subscription: a new subscription resumes it
    SUPPORT = "support"  # support's pause, asked by the customer: only support lifts it
    ROTATION_OVERDUE = "rotation_overdue"  # the token was not rotated by its deadline: a rotated token resumes it


def deployment_resume_block(deployment: Deployment, *, by: str = Deployment.PausedBy.MANUAL) -> str:
    """The one rule for "may `by` resume this deployment now?": a ResumeBlock code, NONE when it may
    (or when it is not paused). deployment_resume enforces it; the customer pages offer Resume only on NONE."""
    PausedBy = Deployment.PausedBy
    if not deployment.paused:
        return ResumeBlock.NONE
    if by == CUSTOMER_ORIGIN != PausedBy.MANUAL and deployment.paused_by == PausedBy.MANUAL:
        return ResumeBlock.SUPPORT
    if deployment.paused_by == PausedBy.AUTH_FAILURES:
        return ResumeBlock.TOKEN_STOP
    if deployment.paused_by == PausedBy.NO_TOKEN:
        return ResumeBlock.NO_TOKEN
    if deployment.paused_by == PausedBy.ROTATION_OVERDUE:
        return ResumeBlock.ROTATION_OVERDUE
    if deployment.paused_by == PausedBy.AUTO_LOCK:
        lock = customer_lock_reason(deployment.customer)
        if lock == Reason.CANCELED or (lock and deployment.customer.subscription_status in ENDED_STATUSES):
            return ResumeBlock.ENDED
        if lock:
            return ResumeBlock.LOCKED
    return ResumeBlock.NONE


def resume_offered(deployment: Deployment, block: str, *, entitled: bool, by: str) -> bool:
    """Whether a page offers `by` a Resume button: never for a pause `by` may not lift (a ResumeBlock), and,
    while the customer is not entitled, only for `by`'s own pause (lifting it succeeds; updates then wait for
    the subscription). An automatic pause is the subscription's to lift, never a button's."""
    if not deployment.paused or block:
        return False
    return entitled or deployment.paused_by == by


def with_wanted_version(qs: QuerySet, latest_version: str) -> QuerySet:
    """Annotate `wanted`: the pinned version, or the latest release when not pinned."""
    return qs.annotate(wanted=Case(When(pinned_version="", then=Value(latest_version)), default=F("pinned_version"),
                                   output_field=CharField()))


def deployments_behind(qs: QuerySet, latest_version: str) -> QuerySet:
    return with_wanted_version(qs, latest_version).exclude(wanted="").exclude(current_version=F("wanted"))


def deployments_due(*, latest_version: str, ids: list | None = None, now: datetime | None = None) -> list[tuple[UUID, str]]:
    """(deployment id, wanted version) for every deployment to push now: not paused, not waiting out a
    Retry-After, not on its wanted version, and whose customer is entitled (the core selector decides)."""
    now = now or timezone.now()
    qs = Deployment.objects.filter(paused=False).exclude(next_attempt_at__gt=now)
    if ids is not None:
        qs = qs.filter(pk__in=ids)
    qs = (deployments_behind(qs, latest_version).select_related("customer")
          .only("id", "pinned_version", "current_version", "customer__subscription_id", "customer__subscription_status",
                "customer__access_state", "customer__plan", "customer__current_period_end",
                "customer__collection_paused", "customer__dispute_open")
          .order_by("created_at"))
    return [(d.pk, d.wanted) for d in qs.iterator(chunk_size=2000) if customer_entitlement(d.customer, now=now).entitled]


def deployment_counts() -> dict[str, int]:
    return Deployment.objects.aggregate(
        total=Count("id"), active=Count("id", filter=Q(status=Deployment.Status.ACTIVE)),
        paused=Count("id", filter=Q(status=Deployment.Status.PAUSED)), errored=Count("id", filter=Q(status=Deployment.Status.ERRORED)))


def rotation_counts() -> dict[str, int]:
    """Deployments asked to rotate their token and not rotated yet, and of those, the ones paused for it."""
    return Deployment.objects.filter(rotation_due_at__isnull=False).aggregate(
        pending=Count("id"), overdue=Count("id", filter=Q(paused=True, paused_by=Deployment.PausedBy.ROTATION_OVERDUE)))


def ops_section() -> dict:
    """/api/ops/summary: deployments by status, and the errored ones as a problem for the daily report."""
    counts = deployment_counts()
    problems = [f"{counted(counts['errored'], 'deployment')} errored"] if counts.get("errored") else []
    return {"byStatus": counts, "problems": problems}


def push_events(limit: int = 5) -> list[dict]:
    """The last finished pushes (derived from PublishVersion: each finished publish is a push event).
    Public answer: a short deployment id, no customer, account or token."""
    rows = (PublishVersion.objects.filter(completed_at__isnull=False).order_by("-completed_at")
            .values("deployment_id", "number", "version", "status", "trigger", "error_code", "completed_at")[:limit])
    return [{
        "at": r["completed_at"].isoformat().replace("+00:00", "Z"),
        "type": "push-failure" if r["status"] == PublishVersion.Status.FAILED else "push-ok",
        "deployment": str(r["deployment_id"])[:8],
        "publish": r["number"],
        "version": r["version"],
        "status": r["status"],
        "trigger": r["trigger"],
        "errorCode": r["error_code"] or None,
    } for r in rows]


def cloud_health_section() -> dict:
    """Filled into /api/cloud/health by the provider registered in DeploymentsConfig.ready()."""
    last = (CronRun.objects.filter(name=PUSH_CRON).exclude(status=CronRun.Status.SKIPPED)
            .order_by("-started_at").only("started_at", "status").first())
    return {
        "deployments": deployment_counts(),
        "cron": {
            "lastRunAt": last.started_at.isoformat().replace("+00:00", "Z") if last else None,
            "lastRunStatus": last.status if last else None,
            "recent": push_events(5),
        },
    }


# --- The deploy page's readiness panel (reference/000 "Deploy outcomes by readiness state") -------------
@dataclass(frozen=True)
class Readiness:
    LIVE = "live"
    ALMOST = "almost"
    FAILED = "failed"

    state: str
    title: str
    message: str
    log: list[str] = field(default_factory=list)


def deploy_readiness(deployment: Deployment | None = None) -> Readiness:
    """Live (green), Almost there (orange) or Failed (red), with the steps that explain it."""
    flags = config_flags()
    missing = [name for name, flag in (("CLOUD_MASTER_KEY", "hasCloudMasterKey"), ("HELM_BUNDLE_MANIFEST_URL", "hasManifestUrl"))
               if not flags[flag]]
    if missing:
        return Readiness(Readiness.FAILED, "Failed", "Managed deployments are not configured on this console yet.",
                         [f"Missing setting: {name} (operator)" for name in missing])
    release = latest_release()
    if deployment is not None and deployment.status == Deployment.Status.ERRORED:
        log = [f"#{p.number} {p.version}: {p.get_status_display()}" + (f" - {p.error_message}" if p.error_message else "")
               for p in deployment.publishes.order_by("-number")[:5]]
        return Readiness(Readiness.FAILED, "Failed", deployment.last_error_message or "The last push failed.", log)
    if release is None:
        return Readiness(Readiness.ALMOST, "Almost there",
                         ("Your Cloudflare account is connected. No release of the app has reached us yet: we check "
                          "for one every hour and push it to your Worker then. Nothing to do on your side."
                          if deployment is not None else
                          "No release of the app has reached us yet. Connect your Cloudflare account here: we "
                          "check for a release every hour and push it to your Worker then."),
                         ["No tagged release is published at the manifest URL yet."])
    if deployment is not None and not deployment.current_version:
        version = deployment.pinned_version or release.version
        if deployment.publishes.filter(status__in=PublishVersion.IN_FLIGHT).exists():
            return Readiness(Readiness.ALMOST, "Almost there",
                             f"Release {version} is on its way to your Worker. Refresh this page in a few seconds.",
                             ["Token verified with Cloudflare.", f"Pushing release {version}."])
        return Readiness(Readiness.ALMOST, "Almost there",
                         f"Your Worker will receive release {version} at the next hourly push.",
                         ["Token verified with Cloudflare.", "Waiting for the first push."])
    version = deployment.current_version if deployment is not None else release.version
    note = " Pushes are paused." if deployment is not None and deployment.paused else ""
    worker = f"Workers & Pages → {deployment.script_name}" if deployment is not None else "Workers & Pages"
    return Readiness(Readiness.LIVE, "Live", f"Your Worker is deployed and running release {version}. The app is at "
                     f"/app on the Worker's address (its workers.dev address or your own domain, shown in the "
                     f"Cloudflare dashboard under {worker}).{note}")
