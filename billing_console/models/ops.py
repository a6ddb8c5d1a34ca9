"""Operations: cron runs and the audit trail."""
from django.db import models
from django.db.models import Q

from billing_console.models.customers import Customer


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
