"""What the console keeps of Stripe's lifecycle beyond the subscription fields: subscriptions nobody can be
linked to yet, and disputes."""
from django.db import models

from billing_console.models.customers import Customer


class UnlinkedSubscription(models.Model):
    """A subscription made outside Checkout whose Stripe customer has no email: support links it to a
    customer by email (admin), or it links itself once Stripe's customer gets an email."""

    subscription_id = models.CharField(max_length=255, unique=True)
    stripe_customer_id = models.CharField(max_length=255, db_index=True)
    status = models.CharField(max_length=32, blank=True)
    price_id = models.CharField(max_length=255, blank=True)
    data = models.JSONField(default=dict, blank=True, help_text="The subscription as last received.")
    state_at = models.DateTimeField(null=True, blank=True)
    customer = models.ForeignKey(Customer, null=True, blank=True, on_delete=models.SET_NULL, related_name="+")
    resolved_at = models.DateTimeField(null=True, blank=True)
    resolved_by = models.CharField(max_length=150, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["resolved_at", "-created_at"]

    def __str__(self):
        return f"{self.subscription_id} ({self.status or '-'})"


class Dispute(models.Model):
    """A chargeback on one of a customer's payments, from charge.dispute.* events."""

    class Outcome(models.TextChoices):
        OPEN = "", "Open"
        WON = "won", "Won"
        LOST = "lost", "Lost"
        OTHER = "closed", "Closed"

    stripe_id = models.CharField(max_length=255, unique=True)
    charge_id = models.CharField(max_length=255, blank=True, db_index=True)
    customer = models.ForeignKey(Customer, null=True, blank=True, on_delete=models.SET_NULL, related_name="disputes")
    invoice_id = models.CharField(max_length=255, blank=True)
    amount = models.BigIntegerField(default=0, help_text="Minor units.")
    currency = models.CharField(max_length=3, blank=True)
    reason = models.CharField(max_length=64, blank=True)
    status = models.CharField(max_length=32, blank=True, help_text="Stripe's dispute status.")
    outcome = models.CharField(max_length=8, choices=Outcome.choices, default=Outcome.OPEN, blank=True)
    evidence_due_by = models.DateTimeField(null=True, blank=True)
    opened_at = models.DateTimeField()
    closed_at = models.DateTimeField(null=True, blank=True)
    state_at = models.DateTimeField(null=True, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["-opened_at"]

    def __str__(self):
        return f"{self.stripe_id} ({self.outcome or self.status})"
