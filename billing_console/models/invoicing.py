"""Invoices, their delivery events, the legacy ledger and reconciliation runs with their drift items."""
from django.db import models

from billing_console.models.customers import Customer
from billing_console.stripe.statuses import InvoiceStatus


class Invoice(models.Model):
    """The console's copy of a Stripe invoice: amounts in minor units, and its delivery state."""

    class Delivery(models.TextChoices):
        PENDING = "pending", "Pending"
        RENDERED = "rendered", "PDF rendered"
        SENT = "sent", "Emailed"
        FAILED = "failed", "Failed"
        LEGACY = "legacy", "Left to the legacy system"

    stripe_id = models.CharField(max_length=255, unique=True)
    customer = models.ForeignKey(Customer, null=True, blank=True, on_delete=models.SET_NULL, related_name="invoices")
    stripe_customer_id = models.CharField(max_length=255, db_index=True)
    subscription_id = models.CharField(max_length=255, blank=True, db_index=True)
    number = models.CharField(max_length=64, blank=True)
    status = models.CharField(max_length=32, blank=True, choices=InvoiceStatus.choices)
    currency = models.CharField(max_length=3)
    subtotal = models.BigIntegerField(default=0)
    tax = models.BigIntegerField(default=0)
    total = models.BigIntegerField(default=0)
    amount_due = models.BigIntegerField(default=0)
    amount_paid = models.BigIntegerField(default=0)
    discount = models.BigIntegerField(default=0, help_text="Minor units: the sum of the invoice's discounts.")
    amount_refunded = models.BigIntegerField(default=0, help_text="Minor units refunded on the invoice's payment.")
    refunded_at = models.DateTimeField(null=True, blank=True)
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
        verbose_name_plural = "ledger entries"


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

    def __str__(self):
        started = f" of {self.started_at:%Y-%m-%d %H:%M} UTC" if self.started_at else ""
        return f"Reconciliation run #{self.pk}{started} ({self.get_status_display().lower()})"


class DriftItem(models.Model):
    class Kind(models.TextChoices):
        SUBSCRIPTION_STATUS = "subscription_status", "Subscription status differs"
        INVOICE_TOTAL = "invoice_total", "Invoice total differs"
        INVOICE_STATUS = "invoice_status", "Invoice status differs"
        INVOICE_MISSING = "invoice_missing", "Invoice missing locally"
        REVENUE_LEAK = "revenue_leak", "Entitled without a paying subscription"
        CUSTOMER_HARMED = "customer_harmed", "Paying without entitlement"
        LEDGER_TOTAL = "ledger_total", "Legacy ledger total differs"
        DOUBLE_CHARGE = "double_charge", "Paid twice for one service period"
        USAGE_TOTAL = "usage_total", "Reported usage differs from Stripe's meter"

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


class StripeImportCursor(models.Model):
    """Where a paginated backfill from Stripe stopped, so the next start resumes there instead of from the top."""

    name = models.CharField(max_length=64, unique=True)
    since = models.DateField(null=True, blank=True, help_text="Only objects created on or after this day.")
    starting_after = models.CharField(max_length=255, blank=True, help_text="Last id of the last page done.")
    pages = models.PositiveIntegerField(default=0)
    counts = models.JSONField(default=dict, blank=True)
    started_at = models.DateTimeField(null=True, blank=True)
    updated_at = models.DateTimeField(auto_now=True)
    finished_at = models.DateTimeField(null=True, blank=True)

    def __str__(self):
        return f"{self.name} ({'finished' if self.finished_at else 'at ' + (self.starting_after or 'start')})"


class Cohort(models.Model):
    """A migration cohort (customers whose `Customer.cohort` is this name): when it started under the
    console, whether the console emails its invoices (off: the legacy system does, the rollback), and
    whether each account needs a review sign-off before it moves (custom arrangements)."""

    name = models.CharField(max_length=64, unique=True, help_text="As in the customers' Cohort field.")
    started_at = models.DateTimeField(help_text="When the cohort's first billing cycle under Stripe began.")
    console_emails_invoices = models.BooleanField(
        default=True, help_text="Off: the console records the cohort's invoices but the legacy system emails them.")
    requires_account_review = models.BooleanField(
        default=False, help_text="Each account needs a review sign-off before the cohort may move (custom arrangements).")
    note = models.TextField(blank=True)
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["name"]

    def __str__(self):
        return self.name


class CohortAccountReview(models.Model):
    """Support's sign-off that one account of a reviewed cohort may move to the console: who and when."""

    customer = models.OneToOneField(Customer, on_delete=models.CASCADE, related_name="cohort_review")
    cohort = models.CharField(max_length=64)
    signed_off_by = models.CharField(max_length=255)
    signed_off_at = models.DateTimeField()
    note = models.TextField(blank=True)

    class Meta:
        ordering = ["-signed_off_at"]

    def __str__(self):
        return f"{self.cohort} review of {self.customer_id} by {self.signed_off_by}"
