"""Usage: events taken from the product's backend, and the reports that carry their totals to Stripe.

`UsageEvent` is append-only: its business fields (customer, meter, quantity, timestamp, key) never
change; `report` is set once, when a report run claims the event into a window's report.
`UsageReport` is one meter event sent (or to be sent) to Stripe: the total of one customer, meter
and time window as claimed by one run, with the `identifier` Stripe deduplicates on, fixed before
the first send so a retry or a crash can never count it twice.
"""
from django.db import models
from django.db.models import Q

from billing_console.models.customers import Customer


class UsageReport(models.Model):
    class State(models.TextChoices):
        PENDING = "pending", "Pending (claimed, not sent yet)"
        SENDING = "sending", "Sending"
        RETRY = "retry", "Retry (transient error)"
        SENT = "sent", "Sent to Stripe"
        FAILED = "failed", "Failed (needs support)"

    customer = models.ForeignKey(Customer, on_delete=models.PROTECT, related_name="usage_reports")
    meter = models.CharField(max_length=64, help_text="The meter's key in USAGE_METERS.")
    # Epoch seconds of the window's start (USAGE_REPORT_WINDOW_SECONDS wide).
    window_start = models.BigIntegerField()
    # The timestamp sent to Stripe: the window's latest event, so the usage lands in the period it happened in.
    event_timestamp = models.DateTimeField()
    quantity = models.DecimalField(max_digits=24, decimal_places=6, default=0)
    event_count = models.PositiveIntegerField(default=0)
    identifier = models.CharField(max_length=100, unique=True)
    state = models.CharField(max_length=16, choices=State.choices, default=State.PENDING)
    attempts = models.PositiveIntegerField(default=0)
    next_attempt_at = models.DateTimeField(null=True, blank=True)
    error_code = models.CharField(max_length=64, blank=True)
    error = models.TextField(blank=True)
    claimed_at = models.DateTimeField()
    sent_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        indexes = [
            models.Index(fields=["state", "next_attempt_at"], name="usage_report_due"),
            models.Index(fields=["customer", "meter", "event_timestamp"], name="usage_report_customer"),
        ]
        ordering = ["-window_start"]

    def __str__(self):
        return f"{self.meter} {self.quantity} ({self.state})"


class UsageEvent(models.Model):
    # No database FK constraints on this table: a constraint makes PostgreSQL lock the referenced customer
    # row (KEY SHARE) for every inserted event and check the report for every claimed one, which halved
    # ingestion and claiming. The ingest service resolves the customer in the same request, PROTECT still
    # guards deletes through the ORM, and reports are only ever created before events point at them.
    customer = models.ForeignKey(Customer, on_delete=models.PROTECT, related_name="+", db_index=False,
                                 db_constraint=False)
    meter = models.CharField(max_length=64)
    quantity = models.DecimalField(max_digits=24, decimal_places=6)
    timestamp = models.DateTimeField()
    # Epoch seconds of the reporting window the timestamp falls in (fixed at ingestion).
    window_start = models.BigIntegerField()
    idempotency_key = models.CharField(max_length=255)
    received_at = models.DateTimeField()
    report = models.ForeignKey(UsageReport, null=True, blank=True, on_delete=models.PROTECT, related_name="events",
                               db_index=False, db_constraint=False)

    class Meta:
        constraints = [
            # Idempotency: INSERT ... ON CONFLICT DO NOTHING on this pair accepts a repeated key once.
            models.UniqueConstraint(fields=["customer", "idempotency_key"], name="usage_event_idempotency"),
        ]
        # Few indexes on purpose: every one is written by each ingested event. Reads per customer and
        # period go through the reports (one row per window) plus the unreported rows.
        indexes = [
            # The report run's scan: only unreported rows are in it, so it stays small however big the table grows.
            models.Index(fields=["customer", "meter", "window_start"], name="usage_event_unreported",
                         condition=Q(report__isnull=True)),
            models.Index(fields=["report"], name="usage_event_report", condition=Q(report__isnull=False)),
        ]
