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

    class Meta:
        # Every index costs each webhook's INSERT: only the lookups the console makes, and no LIKE
        # (varchar_pattern_ops) twins, which `unique=True` / `db_index=True` would add on PostgreSQL.
        constraints = [models.UniqueConstraint(fields=["stripe_id"], name="webhookevent_stripe_id_unique")]
        indexes = [models.Index(fields=["status", "next_attempt_at"], name="webhookevent_status_next"),
                   models.Index(fields=["type"], name="webhookevent_type"),
                   models.Index(fields=["object_id"], name="webhookevent_object_id"),
                   # The queue the workers claim from, oldest first: only the received rows, so it stays
                   # small however many applied events the inbox keeps.
                   models.Index(fields=["stripe_created", "id"], name="webhookevent_received",
                                condition=models.Q(status="received"))]
        ordering = ["-stripe_created"]

    def __str__(self):
        return f"{self.type} {self.stripe_id}"


class InboxWake(models.Model):
    """Present while a drain of the event inbox is queued: the webhook view enqueues a drain only when
    it creates (or finds stale) this one row, and a drain deletes it as it starts."""

    id = models.PositiveSmallIntegerField(primary_key=True, default=1)
    requested_at = models.DateTimeField()

    def __str__(self):
        return f"inbox drain requested at {self.requested_at:%Y-%m-%d %H:%M:%S}"
