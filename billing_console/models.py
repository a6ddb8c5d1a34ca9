"""Core nouns: customers, checkout attempts, Stripe events, invoices, reconciliation, crons, audit.

Fields, choices, constraints and small properties only; every write lives in services.
"""
import secrets
import uuid

from django.core.validators import RegexValidator
from django.db import models
from django.db.models import Q
from django.db.models.functions import Lower

from billing_console.vault import Secret

E164 = RegexValidator(r"^\+[1-9]\d{6,14}$", "Enter the number in international E.164 form, e.g. +5511999999999.")


def new_salt() -> str:
    return secrets.token_hex(8)


class Customer(models.Model):
    class AccessState(models.TextChoices):
        ACTIVE = "active", "Active"
        GRACE = "grace", "Grace (payment failed, still entitled)"
        SOFT_LOCKED = "soft_locked", "Soft locked"
        HARD_LOCKED = "hard_locked", "Hard locked"
        CANCELED = "canceled", "Canceled"

    email = models.EmailField(max_length=254)
    name = models.CharField(max_length=200, blank=True)
    phone = models.CharField(max_length=16, blank=True, validators=[E164], help_text="E.164, e.g. +5511999999999")
    # A link to dj-stripe's mirror, by Stripe id; no DB constraint so the console's row can exist
    # before dj-stripe's sync of the same customer lands (events arrive in any order).
    stripe_customer = models.ForeignKey(
        "djstripe.Customer", to_field="id", db_constraint=False, null=True, blank=True,
        on_delete=models.DO_NOTHING, related_name="+",
    )
    access_state = models.CharField(max_length=16, choices=AccessState.choices, default=AccessState.ACTIVE)
    access_state_changed_at = models.DateTimeField(null=True, blank=True)
    # Rotating the salt revokes every manage link already sent.
    manage_salt = models.CharField(max_length=32, default=new_salt, editable=False)

    # The console's own view of the subscription, kept by the Stripe receivers. The entitlement
    # selector reads these (one row, no join) so the licence API stays fast.
    subscription_id = models.CharField(max_length=255, blank=True, db_index=True)
    subscription_status = models.CharField(max_length=32, blank=True)
    plan = models.CharField(max_length=32, blank=True)
    price_id = models.CharField(max_length=255, blank=True)
    current_period_end = models.DateTimeField(null=True, blank=True)
    cancel_at_period_end = models.BooleanField(default=False)
    # Watermark: the Stripe timestamp of the newest state applied, so a late event never moves back.
    subscription_state_at = models.DateTimeField(null=True, blank=True)
    # The same for email and name: the Stripe time of the newest customer object applied.
    stripe_customer_state_at = models.DateTimeField(null=True, blank=True)

    # Migration cohort for legacy ledger reconciliation (empty: not migrated).
    cohort = models.CharField(max_length=64, blank=True, db_index=True)
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        constraints = [
            models.UniqueConstraint(Lower("email"), name="customer_email_ci_unique",
                                    violation_error_message="A customer with this email already exists."),
        ]
        indexes = [models.Index(fields=["access_state"]), models.Index(fields=["created_at"])]
        ordering = ["-created_at"]

    def __str__(self):
        return self.email

    def save(self, *args, **kwargs):
        self.email = (self.email or "").strip().lower()
        super().save(*args, **kwargs)


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
                   models.Index(fields=["object_id"], name="webhookevent_object_id")]
        ordering = ["-stripe_created"]

    def __str__(self):
        return f"{self.type} {self.stripe_id}"


class Invoice(models.Model):
    """The console's copy of a Stripe invoice: amounts in minor units, and its delivery state."""

    class Delivery(models.TextChoices):
        PENDING = "pending", "Pending"
        RENDERED = "rendered", "PDF rendered"
        SENT = "sent", "Emailed"
        FAILED = "failed", "Failed"

    stripe_id = models.CharField(max_length=255, unique=True)
    customer = models.ForeignKey(Customer, null=True, blank=True, on_delete=models.SET_NULL, related_name="invoices")
    stripe_customer_id = models.CharField(max_length=255, db_index=True)
    subscription_id = models.CharField(max_length=255, blank=True, db_index=True)
    number = models.CharField(max_length=64, blank=True)
    status = models.CharField(max_length=32, blank=True)
    currency = models.CharField(max_length=3)
    subtotal = models.BigIntegerField(default=0)
    tax = models.BigIntegerField(default=0)
    total = models.BigIntegerField(default=0)
    amount_due = models.BigIntegerField(default=0)
    amount_paid = models.BigIntegerField(default=0)
    period_start = models.DateTimeField(null=True, blank=True)
    period_end = models.DateTimeField(null=True, blank=True)
    hosted_invoice_url = models.URLField(max_length=1000, blank=True)
    stripe_created = models.DateTimeField(null=True, blank=True)
    # Watermark of the newest Stripe state applied.
    state_at = models.DateTimeField(null=True, blank=True)
    data = models.JSONField(default=dict, blank=True, help_text="The Stripe object as last applied.")
    pdf_path = models.CharField(max_length=500, blank=True)
    delivery_status = models.CharField(max_length=16, choices=Delivery.choices, default=Delivery.PENDING, db_index=True)
    delivery_attempts = models.PositiveIntegerField(default=0)
    delivery_error = models.TextField(blank=True)
    next_delivery_at = models.DateTimeField(null=True, blank=True)
    emailed_at = models.DateTimeField(null=True, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["-stripe_created"]

    def __str__(self):
        return self.number or self.stripe_id


class InvoiceEvent(models.Model):
    """One step of an invoice's delivery (webhook_received, pdf_rendered, email_sent, ...)."""

    invoice = models.ForeignKey(Invoice, on_delete=models.CASCADE, related_name="events")
    kind = models.CharField(max_length=32)
    data = models.JSONField(default=dict, blank=True)
    at = models.DateTimeField(auto_now_add=True, db_index=True)

    class Meta:
        ordering = ["-at"]


class LedgerEntry(models.Model):
    """A total imported from the legacy system, compared per account and period for a cohort."""

    account = models.CharField(max_length=255, help_text="Stripe customer id of the account.")
    period = models.CharField(max_length=7, help_text="YYYY-MM")
    total = models.BigIntegerField(help_text="Minor units.")
    currency = models.CharField(max_length=3)
    source = models.CharField(max_length=255, blank=True, help_text="File it was imported from.")
    imported_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        constraints = [models.UniqueConstraint(fields=["account", "period", "currency"], name="ledger_account_period_unique")]
        ordering = ["account", "period"]


class ReconciliationRun(models.Model):
    class Status(models.TextChoices):
        RUNNING = "running", "Running"
        CLEAN = "clean", "Clean"
        DRIFT = "drift", "Drift"
        FAILED = "failed", "Failed"

    started_at = models.DateTimeField(auto_now_add=True)
    finished_at = models.DateTimeField(null=True, blank=True)
    status = models.CharField(max_length=16, choices=Status.choices, default=Status.RUNNING)
    scope = models.JSONField(default=dict, blank=True)
    checked = models.JSONField(default=dict, blank=True, help_text="Counts checked per kind.")
    drift_count = models.PositiveIntegerField(default=0)
    error = models.TextField(blank=True)
    triggered_by = models.CharField(max_length=100, blank=True)

    class Meta:
        ordering = ["-started_at"]


class DriftItem(models.Model):
    class Kind(models.TextChoices):
        SUBSCRIPTION_STATUS = "subscription_status", "Subscription status differs"
        INVOICE_TOTAL = "invoice_total", "Invoice total differs"
        INVOICE_STATUS = "invoice_status", "Invoice status differs"
        INVOICE_MISSING = "invoice_missing", "Invoice missing locally"
        REVENUE_LEAK = "revenue_leak", "Entitled without a paying subscription"
        CUSTOMER_HARMED = "customer_harmed", "Paying without entitlement"
        LEDGER_TOTAL = "ledger_total", "Legacy ledger total differs"

    class Resolution(models.TextChoices):
        OPEN = "open", "Open"
        RESYNCED = "resynced", "Resynced"
        EXPLAINED = "explained", "Explained"

    run = models.ForeignKey(ReconciliationRun, on_delete=models.CASCADE, related_name="items")
    kind = models.CharField(max_length=32, choices=Kind.choices)
    customer = models.ForeignKey(Customer, null=True, blank=True, on_delete=models.SET_NULL, related_name="drift_items")
    stripe_id = models.CharField(max_length=255, blank=True)
    expected = models.CharField(max_length=255, blank=True, help_text="Stripe's view.")
    actual = models.CharField(max_length=255, blank=True, help_text="The console's view.")
    delta = models.BigIntegerField(default=0, help_text="Minor units; 0 when not an amount.")
    currency = models.CharField(max_length=3, blank=True)
    resolution = models.CharField(max_length=16, choices=Resolution.choices, default=Resolution.OPEN, db_index=True)
    note = models.TextField(blank=True)
    resolved_by = models.CharField(max_length=150, blank=True)
    resolved_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["run", "kind"]


class CronRun(models.Model):
    class Status(models.TextChoices):
        RUNNING = "running", "Running"
        OK = "ok", "OK"
        ERRORS = "errors", "Errors"
        SKIPPED = "skipped", "Skipped (already running)"
        ABANDONED = "abandoned", "Abandoned (crashed)"

    name = models.CharField(max_length=100)
    started_at = models.DateTimeField(auto_now_add=True)
    finished_at = models.DateTimeField(null=True, blank=True)
    status = models.CharField(max_length=16, choices=Status.choices, default=Status.RUNNING)
    counts = models.JSONField(default=dict, blank=True)
    error_summary = models.TextField(blank=True)

    class Meta:
        constraints = [
            # At most one running instance per cron: the database, not process memory, prevents overlap.
            models.UniqueConstraint(fields=["name"], condition=Q(status="running"), name="cronrun_one_running_per_name"),
        ]
        indexes = [models.Index(fields=["name", "-started_at"])]
        ordering = ["-started_at"]

    def __str__(self):
        return f"{self.name} {self.started_at:%Y-%m-%d %H:%M} {self.status}"


class AuditEvent(models.Model):
    class ActorType(models.TextChoices):
        ADMIN = "admin", "Support/admin"
        CUSTOMER = "customer", "Customer"
        STRIPE = "stripe", "Stripe"
        CRON = "cron", "Cron"
        SYSTEM = "system", "System"
        API = "api", "API client"

    at = models.DateTimeField(auto_now_add=True, db_index=True)
    actor_type = models.CharField(max_length=16, choices=ActorType.choices)
    actor = models.CharField(max_length=255, blank=True)
    action = models.CharField(max_length=100, db_index=True)
    target_type = models.CharField(max_length=100)
    target_id = models.CharField(max_length=255)
    customer = models.ForeignKey(Customer, null=True, blank=True, on_delete=models.SET_NULL, related_name="audit_events")
    data = models.JSONField(default=dict, blank=True)

    class Meta:
        indexes = [models.Index(fields=["target_type", "target_id"]), models.Index(fields=["customer", "-at"])]
        ordering = ["-at"]

    def __str__(self):
        return f"{self.at:%Y-%m-%d %H:%M} {self.actor_type}:{self.actor} {self.action} {self.target_type}#{self.target_id}"
