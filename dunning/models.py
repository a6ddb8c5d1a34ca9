"""Dunning: policies with ordered steps, one case per failed invoice, one log row per (case, step).

Fields, choices, constraints and small properties only; every write lives in services.
"""
from __future__ import annotations

from datetime import timedelta

from django.core.exceptions import ValidationError
from django.core.validators import RegexValidator
from django.db import models
from django.db.models import Q
from django.template import TemplateDoesNotExist
from django.template.loader import get_template
from django.utils import timezone

from billing_console.models import Customer

STEP_CODE = RegexValidator(r"^[A-Z][A-Z0-9_+\-]{0,39}$", "Upper-case letters, digits, _, + and - (e.g. SOFT_D+3).")
TEMPLATE_NAME = RegexValidator(r"^[a-z0-9_]{1,64}$", "Lower-case letters, digits and _ (a file in templates/dunning/).")


class Channel(models.TextChoices):
    EMAIL = "email", "Email"
    WHATSAPP = "whatsapp", "WhatsApp"


def channel_template_names(channel: str, template: str) -> list[str]:
    """The template files a step needs, by channel (rendered by dunning.channels)."""
    if channel == Channel.WHATSAPP:
        return [f"dunning/whatsapp/{template}.txt"]
    return [f"dunning/email/{template}_subject.txt", f"dunning/email/{template}.txt", f"dunning/email/{template}.html"]


class DunningPolicy(models.Model):
    name = models.CharField(max_length=100, unique=True)
    is_default = models.BooleanField(default=False, help_text="Used for every customer without a policy of their own.")
    grace_days = models.PositiveIntegerField(default=3, help_text="Days after the first failure before the soft lock.")
    hard_lock_days = models.PositiveIntegerField(default=14, help_text="Days after the first failure before the hard lock.")
    cancel_after_days = models.PositiveIntegerField(
        null=True, blank=True,
        help_text="Cancel the subscription in Stripe this many days after the first failure, once every step is done. "
                  "Empty: never (Stripe's own retry settings decide).")
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        verbose_name_plural = "dunning policies"
        constraints = [
            models.UniqueConstraint(fields=["is_default"], condition=Q(is_default=True), name="dunning_one_default_policy",
                                    violation_error_message="Another policy is already the default."),
            models.CheckConstraint(condition=Q(hard_lock_days__gte=models.F("grace_days")), name="dunning_hard_after_soft",
                                   violation_error_message="The hard lock cannot come before the soft lock."),
        ]
        ordering = ["-is_default", "name"]

    def __str__(self):
        return f"{self.name} (default)" if self.is_default else self.name

    def clean(self):
        if self.cancel_after_days is not None and self.cancel_after_days < self.hard_lock_days:
            raise ValidationError({"cancel_after_days": "Cancel at or after the hard lock, not before it."})


class DunningStep(models.Model):
    policy = models.ForeignKey(DunningPolicy, on_delete=models.CASCADE, related_name="steps")
    code = models.CharField(max_length=40, validators=[STEP_CODE])
    offset_days = models.PositiveIntegerField(help_text="Days after the first failure.")
    channel = models.CharField(max_length=16, choices=Channel.choices, default=Channel.EMAIL)
    template = models.CharField(max_length=64, validators=[TEMPLATE_NAME],
                                help_text="payment_failed, reminder or final_notice (files under templates/dunning/).")

    class Meta:
        constraints = [models.UniqueConstraint(fields=["policy", "code"], name="dunning_step_code_unique_per_policy")]
        ordering = ["policy", "offset_days", "id"]

    def __str__(self):
        return f"{self.code} (D+{self.offset_days}, {self.channel})"

    def clean(self):
        for name in channel_template_names(self.channel, self.template or ""):
            try:
                get_template(name)
            except TemplateDoesNotExist:
                raise ValidationError({"template": f"No template {name} for the {self.channel} channel."})


class CustomerDunning(models.Model):
    """Per-customer settings: another policy than the default, or no dunning at all."""

    customer = models.OneToOneField(Customer, on_delete=models.CASCADE, related_name="dunning_settings")
    policy = models.ForeignKey(DunningPolicy, null=True, blank=True, on_delete=models.PROTECT, related_name="+",
                               help_text="Empty: the default policy.")
    excluded = models.BooleanField(default=False, help_text="No reminders and no locks for this customer.")
    note = models.CharField(max_length=255, blank=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        verbose_name = "dunning settings"
        verbose_name_plural = "dunning settings"

    def __str__(self):
        return f"dunning settings of {self.customer_id}"


class DunningCase(models.Model):
    class Status(models.TextChoices):
        OPEN = "open", "Open"
        EXHAUSTED = "exhausted", "Exhausted (every step done, still unpaid)"
        RECOVERED = "recovered", "Recovered (paid)"
        CANCELED = "canceled", "Canceled"

    ACTIVE = (Status.OPEN, Status.EXHAUSTED)

    customer = models.ForeignKey(Customer, on_delete=models.CASCADE, related_name="dunning_cases")
    policy = models.ForeignKey(DunningPolicy, on_delete=models.PROTECT, related_name="cases")
    invoice_id = models.CharField(max_length=255, unique=True)
    subscription_id = models.CharField(max_length=255, blank=True, db_index=True)
    stripe_customer_id = models.CharField(max_length=255, blank=True)
    amount_due = models.BigIntegerField(default=0, help_text="Minor units.")
    currency = models.CharField(max_length=3, blank=True)
    hosted_invoice_url = models.URLField(max_length=1000, blank=True)
    attempt_count = models.PositiveIntegerField(default=0, help_text="Stripe's payment attempts on the invoice.")
    # The payment needs the customer to authenticate (3-D Secure): not a decline; they were sent the link.
    action_required_at = models.DateTimeField(null=True, blank=True)
    opened_at = models.DateTimeField(help_text="The first failure.")
    last_failure_at = models.DateTimeField()
    status = models.CharField(max_length=16, choices=Status.choices, default=Status.OPEN)
    # When the next step of the policy falls due; empty when every step has a log. The dunning task
    # picks cases by it, so a run reads only the cases with work.
    next_step_at = models.DateTimeField(null=True, blank=True)
    exhausted_at = models.DateTimeField(null=True, blank=True)
    closed_at = models.DateTimeField(null=True, blank=True)
    close_reason = models.CharField(max_length=64, blank=True)
    cancel_requested_at = models.DateTimeField(null=True, blank=True)
    cancel_error = models.TextField(blank=True)
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        indexes = [
            models.Index(fields=["status", "next_step_at"], name="dunning_case_due_idx"),
            models.Index(fields=["customer", "status"], name="dunning_case_customer_idx"),
            models.Index(fields=["status", "opened_at"], name="dunning_case_age_idx"),
        ]
        ordering = ["-opened_at"]

    def __str__(self):
        return f"{self.invoice_id} ({self.status})"

    @property
    def is_active(self) -> bool:
        return self.status in self.ACTIVE

    def days_past_due(self, now=None) -> int:
        end = self.closed_at or now or timezone.now()
        return max(0, (end - self.opened_at) // timedelta(days=1))


class DunningStepLog(models.Model):
    class Status(models.TextChoices):
        QUEUED = "queued", "Queued"
        SENDING = "sending", "Sending"
        SENT = "sent", "Sent"
        FAILED = "failed", "Failed"
        SKIPPED = "skipped", "Skipped"

    PENDING = (Status.QUEUED, Status.SENDING)

    case = models.ForeignKey(DunningCase, on_delete=models.CASCADE, related_name="step_logs")
    step_code = models.CharField(max_length=40)
    channel = models.CharField(max_length=16, choices=Channel.choices)
    template = models.CharField(max_length=64)
    status = models.CharField(max_length=16, choices=Status.choices, default=Status.QUEUED)
    # A short code (recovered, invalid_phone, instance_disconnected, ...) and the detail for support.
    reason = models.CharField(max_length=64, blank=True)
    detail = models.TextField(blank=True)
    attempts = models.PositiveIntegerField(default=0)
    due_at = models.DateTimeField()
    next_retry_at = models.DateTimeField(null=True, blank=True)
    last_attempt_at = models.DateTimeField(null=True, blank=True)
    sent_at = models.DateTimeField(null=True, blank=True)
    provider_message_id = models.CharField(max_length=255, blank=True)
    provider_response = models.JSONField(default=dict, blank=True, help_text="The provider's status and message id.")
    manual = models.BooleanField(default=False, help_text="Sent or retried by support.")
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        constraints = [models.UniqueConstraint(fields=["case", "step_code"], name="dunning_log_once_per_case_step")]
        indexes = [
            models.Index(fields=["status", "due_at"], name="dunning_log_due_idx"),
            models.Index(fields=["status", "-updated_at"], name="dunning_log_status_idx"),
        ]
        ordering = ["case", "due_at", "id"]

    def __str__(self):
        return f"{self.step_code} #{self.pk} ({self.status})"
