"""What the console keeps of its Stripe traffic: checkout attempts and the webhook event inbox."""
import secrets
import uuid

from django.db import models

from billing_console.models.customers import Customer
from billing_console.vault import Secret


class CheckoutAttempt(models.Model):
    """Created before Stripe is called; its token travels in the session's metadata."""

    class Status(models.TextChoices):
        PENDING = "pending", "Pending"
        PAID = "paid", "Paid"
        ABANDONED = "abandoned", "Abandoned"

    class FollowUp(models.TextChoices):
        NONE = "none", "Not needed"
        QUEUED = "queued", "Queued"
        SENT = "sent", "Sent"
        FAILED = "failed", "Failed"
        SKIPPED = "skipped", "Skipped"

    id = models.UUIDField(primary_key=True, default=uuid.uuid4, editable=False)
    token = models.CharField(max_length=64, unique=True, default=secrets.token_urlsafe, editable=False)
    # The buyer's email is only kept encrypted (it is a recovery address); the hint is for support.
    recovery_email_encrypted = models.TextField(blank=True, editable=False)
    recovery_email = Secret("recovery_email_encrypted")
    email_hint = models.CharField(max_length=254, blank=True)
    plan = models.CharField(max_length=32)
    price_id = models.CharField(max_length=255)
    device_id = models.CharField(max_length=128, blank=True)
    status = models.CharField(max_length=16, choices=Status.choices, default=Status.PENDING, db_index=True)
    stripe_session_id = models.CharField(max_length=255, unique=True, null=True, blank=True)
    customer = models.ForeignKey(Customer, null=True, blank=True, on_delete=models.SET_NULL, related_name="checkout_attempts")
    follow_up_status = models.CharField(max_length=16, choices=FollowUp.choices, default=FollowUp.NONE)
    follow_up_sent_at = models.DateTimeField(null=True, blank=True)
    created_at = models.DateTimeField(auto_now_add=True, db_index=True)
    completed_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["-created_at"]

    def __str__(self):
        return f"{self.email_hint or 'checkout'} ({self.status})"


class WebhookEvent(models.Model):
    """A Stripe event, stored once per event id before the 2xx, then applied by a worker."""

    class Status(models.TextChoices):
        RECEIVED = "received", "Received"
        PROCESSING = "processing", "Processing"
        PROCESSED = "processed", "Processed"
        FAILED = "failed", "Failed"
        IGNORED = "ignored", "Ignored (no receiver for this type)"

    class Mirror(models.TextChoices):
        NONE = "", "Not mirrored"
        DUE = "due", "Due"
        DONE = "done", "Mirrored"
        FAILED = "failed", "Mirror failed (warning)"

    stripe_id = models.CharField(max_length=255)
    type = models.CharField(max_length=100)
    livemode = models.BooleanField(default=False)
    api_version = models.CharField(max_length=64, blank=True)
    stripe_created = models.DateTimeField(db_index=True)
    object_id = models.CharField(max_length=255, blank=True)
    payload = models.JSONField()
    status = models.CharField(max_length=16, choices=Status.choices, default=Status.RECEIVED)
    attempts = models.PositiveIntegerField(default=0)
    last_error = models.TextField(blank=True)
    next_attempt_at = models.DateTimeField(null=True, blank=True)
    received_at = models.DateTimeField(auto_now_add=True)
    processed_at = models.DateTimeField(null=True, blank=True)
    deliveries = models.PositiveIntegerField(default=1, help_text="How many times Stripe delivered it.")
    # dj-stripe's mirror runs after the event is applied, in its own task (billing_console.stripe.mirror).
    mirror = models.CharField(max_length=8, choices=Mirror.choices, default=Mirror.NONE, blank=True)
    mirrored_at = models.DateTimeField(null=True, blank=True)
    mirror_error = models.TextField(blank=True)

    class Meta:
        # Every index costs each webhook's INSERT: only the lookups the console makes, and no LIKE
        # (varchar_pattern_ops) twins, which `unique=True` / `db_index=True` would add on PostgreSQL.
        constraints = [models.UniqueConstraint(fields=["stripe_id"], name="webhookevent_stripe_id_unique")]
        indexes = [models.Index(fields=["status", "next_attempt_at"], name="webhookevent_status_next"),
                   models.Index(fields=["type"], name="webhookevent_type"),
                   models.Index(fields=["object_id"], name="webhookevent_object_id"),
                   # Only the events waiting for the mirror: empty in a steady state, never touched by the INSERT.
                   models.Index(fields=["stripe_created"], name="webhookevent_mirror_due",
                                condition=models.Q(mirror="due")),
                   # The queue the workers claim from, oldest first: only the received rows, so it stays
                   # small however many applied events the inbox keeps.
                   models.Index(fields=["stripe_created", "id"], name="webhookevent_received",
                                condition=models.Q(status="received"))]
        ordering = ["-stripe_created"]

    def __str__(self):
        return f"{self.type} {self.stripe_id}"


class CheckoutSwitch(models.Model):
    """The one row (pk 1) that opens or closes sales: support's toggle, the live-mode preflight guard and
    the rollback close it; CHECKOUT_ENABLED=false closes them whatever it says."""

    SINGLETON = 1

    is_open = models.BooleanField(default=True)
    reason = models.CharField(max_length=255, blank=True, help_text="Why it was last opened or closed.")
    changed_by = models.CharField(max_length=255, blank=True)
    changed_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        verbose_name = "checkout switch"
        verbose_name_plural = "checkout switch"

    def __str__(self):
        return "Checkout open" if self.is_open else "Checkout closed"


class InboxWake(models.Model):
    """Present while a drain of the event inbox is queued: the webhook view enqueues a drain only when
    it creates (or finds stale) this one row, and a drain deletes it as it starts."""

    id = models.PositiveSmallIntegerField(primary_key=True, default=1)
    requested_at = models.DateTimeField()

    def __str__(self):
        return f"inbox drain requested at {self.requested_at:%Y-%m-%d %H:%M:%S}"
