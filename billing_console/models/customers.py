"""Customers: the console's own account row, linked to Stripe by id.

Fields, choices, constraints and small properties only; every write lives in services.
"""
import secrets

from django.core.validators import RegexValidator
from django.db import models
from django.db.models.functions import Lower

from billing_console.stripe.statuses import SubscriptionStatus

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
    # A number Stripe sent that is not a valid international number, kept as sent so support can see it
    # (the WhatsApp steps of dunning skip until a valid one is set).
    phone_invalid = models.CharField("invalid phone received", max_length=64, blank=True)
    # When the customer themselves gave the number on the manage page, agreeing to WhatsApp reminders.
    phone_consent_at = models.DateTimeField(null=True, blank=True)
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
    subscription_status = models.CharField(max_length=32, blank=True, choices=SubscriptionStatus.choices)
    plan = models.CharField(max_length=32, blank=True)
    price_id = models.CharField(max_length=255, blank=True)
    current_period_end = models.DateTimeField(null=True, blank=True)
    cancel_at_period_end = models.BooleanField(default=False)
    # pause_collection is set on a running subscription: invoices are not collected (see PAUSED_SUBSCRIPTION_ENTITLED).
    collection_paused = models.BooleanField(default=False)
    trial_end = models.DateTimeField(null=True, blank=True)
    quantity = models.PositiveIntegerField(default=1, help_text="Seats on the subscription's price.")
    # The discount Stripe applies to the subscription or customer, as shown to the customer and support:
    # {"discount" (di_ id), "subscription" (empty: the customer's own), "coupon", "name", "percent_off",
    # "amount_off" (minor units), "currency", "duration", "duration_in_months", "start", "end"} (see
    # billing_console/stripe/discounts.py); {} when none.
    discount = models.JSONField(default=dict, blank=True)
    # Its watermark (the Stripe time of the newest discount state applied) and the discounts Stripe deleted
    # (ids are never reused: a late event never brings one back), newest last, a few kept.
    discount_state_at = models.DateTimeField(null=True, blank=True)
    discounts_deleted = models.JSONField(default=list, blank=True)
    # An open dispute (chargeback) on one of the customer's payments (see DISPUTE_LOCKS_ACCESS).
    dispute_open = models.BooleanField(default=False)
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


class ManageLinkDelivery(models.Model):
    """One email of a fresh manage link (after checkout, from /recover, or sent by support), tracked and retried
    with backoff like invoice delivery. The link itself is signed at send time and never stored."""

    class Status(models.TextChoices):
        PENDING = "pending", "Pending (due or retrying)"
        SENT = "sent", "Sent"
        FAILED = "failed", "Failed (gave up)"

    customer = models.ForeignKey(Customer, on_delete=models.CASCADE, related_name="manage_link_deliveries")
    reason = models.CharField(max_length=32)
    requested_by = models.CharField(max_length=255, blank=True)
    status = models.CharField(max_length=16, choices=Status.choices, default=Status.PENDING)
    attempts = models.PositiveIntegerField(default=0)
    last_error = models.CharField(max_length=500, blank=True)
    # When the next (re)try is due; a claim moves it forward by a lease so two workers never both send.
    next_attempt_at = models.DateTimeField(null=True, blank=True)
    sent_at = models.DateTimeField(null=True, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        indexes = [models.Index(fields=["status", "next_attempt_at"])]
        ordering = ["-created_at"]

    def __str__(self):
        return f"manage link to {self.customer_id} ({self.reason}, {self.status})"
