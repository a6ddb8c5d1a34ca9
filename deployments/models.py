"""Managed deployments: a Worker script in a customer's Cloudflare account, the bundle releases the
manifest names, and one PublishVersion per attempt to put a version on a deployment.

Fields, choices, constraints and small properties only; every write lives in services.
"""
import uuid

from django.db import models
from django.db.models import Q

from billing_console.vault import Secret


class ErrorCode(models.TextChoices):
    """Why a push or a token check failed. Shown to support and, in plain words, to the customer."""

    TOKEN_INVALID = "token_invalid", "Token expired or revoked"
    TOKEN_SCOPE = "token_scope", "Token lacks Workers Scripts:Edit for this account"
    ACCOUNT_SUSPENDED = "account_suspended", "Cloudflare account suspended"
    RATE_LIMITED = "rate_limited", "Rate limited by Cloudflare"
    UPSTREAM_ERROR = "upstream_error", "Cloudflare error"
    NETWORK = "network", "Network error reaching Cloudflare"
    REQUEST_REJECTED = "request_rejected", "Cloudflare rejected the upload"
    BUNDLE_UNAVAILABLE = "bundle_unavailable", "Bundle unavailable or failed its checksum"
    TOKEN_UNREADABLE = "token_unreadable", "Stored token cannot be decrypted"
    INTERRUPTED = "interrupted", "Push interrupted (worker stopped)"


AUTH_ERROR_CODES = {ErrorCode.TOKEN_INVALID, ErrorCode.TOKEN_SCOPE}


class Deployment(models.Model):
    class Status(models.TextChoices):
        ACTIVE = "active", "Active"
        PAUSED = "paused", "Paused"
        ERRORED = "errored", "Errored"

    class PausedBy(models.TextChoices):
        NONE = "", "-"
        MANUAL = "manual", "Support"
        CUSTOMER = "customer", "The customer (manage page)"
        AUTO_LOCK = "auto_lock", "Automatic (customer locked or canceled)"
        AUTH_FAILURES = "auth_failures", "Automatic (token rejected repeatedly)"
        NO_TOKEN = "no_token", "Waiting for an API token (restored deployment)"
        ROTATION_OVERDUE = "rotation_overdue", "Automatic (token rotation overdue)"

    # UUID primary key: the vault binds the row id into the token's ciphertext, so it must exist first.
    id = models.UUIDField(primary_key=True, default=uuid.uuid4, editable=False)
    customer = models.ForeignKey("billing_console.Customer", on_delete=models.CASCADE, related_name="deployments")
    # Which of the plan's deployments this is (1..PLANS[plan]["deployments"]): unique per customer, so two
    # concurrent creates for a one-deployment plan cannot both land.
    slot = models.PositiveSmallIntegerField(default=1, editable=False)
    account_id = models.CharField("Cloudflare account id", max_length=64)
    script_name = models.CharField(max_length=63)
    api_token_encrypted = models.TextField(blank=True, editable=False)
    api_token = Secret("api_token_encrypted")
    # What support may see of the token: its last four characters and when it was set.
    token_last4 = models.CharField(max_length=4, blank=True)
    token_set_at = models.DateTimeField(null=True, blank=True)
    # Set when the customer is asked to rotate the token (master key leaked); cleared by a rotation.
    # Past it, the deployment pauses with ROTATION_OVERDUE until the token is rotated.
    rotation_due_at = models.DateTimeField(null=True, blank=True, db_index=True)

    status = models.CharField(max_length=16, choices=Status.choices, default=Status.ACTIVE)
    paused = models.BooleanField(default=False)
    paused_by = models.CharField(max_length=16, choices=PausedBy.choices, default=PausedBy.NONE, blank=True)
    paused_reason = models.CharField(max_length=255, blank=True)
    paused_at = models.DateTimeField(null=True, blank=True)

    pinned_version = models.CharField(max_length=64, blank=True, help_text="Empty: follow the latest release.")
    current_version = models.CharField(max_length=64, blank=True, help_text="Version live on Cloudflare.")
    last_error_code = models.CharField(max_length=32, choices=ErrorCode.choices, blank=True)
    last_error_message = models.TextField(blank=True)
    last_error_at = models.DateTimeField(null=True, blank=True)
    consecutive_failures = models.PositiveIntegerField(default=0)
    consecutive_auth_failures = models.PositiveIntegerField(default=0)
    # Honours Cloudflare's Retry-After across runs: no push before this time.
    next_attempt_at = models.DateTimeField(null=True, blank=True)
    last_push_at = models.DateTimeField(null=True, blank=True)
    # Last PublishVersion.number handed out (numbers are per deployment).
    publish_seq = models.PositiveIntegerField(default=0, editable=False)
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["account_id", "script_name"], name="deployment_account_script_unique",
                                    violation_error_message="This Cloudflare account already has a deployment with that script name."),
            models.UniqueConstraint(fields=["customer", "slot"], name="deployment_one_per_customer_slot",
                                    violation_error_message="The customer already has the deployments their plan includes."),
            models.CheckConstraint(condition=Q(slot__gte=1), name="deployment_slot_positive"),
        ]
        indexes = [models.Index(fields=["status"]), models.Index(fields=["paused", "current_version"]),
                   models.Index(fields=["created_at"])]
        ordering = ["-created_at"]

    def __str__(self):
        return f"{self.script_name} ({self.account_id[:8]})"

    @property
    def stopped_for_auth(self) -> bool:
        return self.paused and self.paused_by == self.PausedBy.AUTH_FAILURES

    @property
    def waits_for_token(self) -> bool:
        """Paused until a (new) token is stored: a token stop, or a shell restored without one."""
        return self.paused and self.paused_by in (self.PausedBy.AUTH_FAILURES, self.PausedBy.NO_TOKEN)

    def derived_status(self) -> str:
        """Status follows from the pause and the last error; a token stop counts as errored (it needs a person)."""
        if self.paused and self.paused_by != self.PausedBy.AUTH_FAILURES:
            return self.Status.PAUSED
        if self.last_error_code:
            return self.Status.ERRORED
        return self.Status.ACTIVE


class BundleRelease(models.Model):
    """A release named by the manifest. Kept so a deployment can be pinned to (or rolled back to) it."""

    version = models.CharField(max_length=64, unique=True)
    bundle_url = models.URLField(max_length=1000)
    sha256 = models.CharField(max_length=64)
    size = models.PositiveBigIntegerField(default=0)
    seen_at = models.DateTimeField(auto_now_add=True, help_text="First named by the manifest.")
    last_seen_at = models.DateTimeField(null=True, blank=True, db_index=True,
                                        help_text="Last named by the manifest: the newest of these is the latest release.")

    class Meta:
        ordering = ["-last_seen_at", "-seen_at"]

    def __str__(self):
        return self.version


class PublishVersion(models.Model):
    """One attempt to put one version on one deployment (also the push event shown in health)."""

    class Status(models.TextChoices):
        QUEUED = "queued", "Queued"
        BUILDING = "building", "Building"
        DEPLOYING = "deploying", "Deploying"
        LIVE = "live", "Live"
        FAILED = "failed", "Failed"
        SUPERSEDED = "superseded", "Superseded"
        ROLLED_BACK = "rolled_back", "Rolled back"

    class Trigger(models.TextChoices):
        CRON = "cron", "Hourly run"
        MANUAL = "manual", "Push now"
        REQUEUE = "requeue", "Requeue"
        ROLLBACK = "rollback", "Rollback"

    IN_FLIGHT = (Status.QUEUED, Status.BUILDING, Status.DEPLOYING)

    deployment = models.ForeignKey(Deployment, on_delete=models.CASCADE, related_name="publishes")
    number = models.PositiveIntegerField()
    version = models.CharField(max_length=64)
    status = models.CharField(max_length=16, choices=Status.choices, default=Status.QUEUED)
    trigger = models.CharField(max_length=16, choices=Trigger.choices, default=Trigger.CRON)
    actor = models.CharField(max_length=255, blank=True)
    error_code = models.CharField(max_length=32, choices=ErrorCode.choices, blank=True)
    error_message = models.TextField(blank=True)
    created_at = models.DateTimeField(auto_now_add=True)
    started_at = models.DateTimeField(null=True, blank=True)
    completed_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["deployment", "number"], name="publish_number_per_deployment"),
            # The per-deployment claim, enforced by the database: one unfinished publish at a time.
            models.UniqueConstraint(fields=["deployment"], condition=Q(status__in=["queued", "building", "deploying"]),
                                    name="publish_one_in_flight_per_deployment"),
        ]
        indexes = [models.Index(fields=["status", "created_at"]), models.Index(fields=["-completed_at"])]
        ordering = ["-created_at"]

    def __str__(self):
        return f"#{self.number} {self.version} ({self.status})"

    @property
    def duration_seconds(self) -> float | None:
        if self.started_at and self.completed_at:
            return (self.completed_at - self.started_at).total_seconds()
        return None
