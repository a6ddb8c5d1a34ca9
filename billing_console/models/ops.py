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


class Heartbeat(models.Model):
    """The last time a process proved it runs: the `heartbeat` cron updates the row named "qcluster" each
    minute, so its age is how long the task cluster has not executed a task."""

    name = models.CharField(max_length=50, primary_key=True)
    at = models.DateTimeField()
    beats = models.PositiveBigIntegerField(default=0)

    def __str__(self):
        return f"{self.name} {self.at:%Y-%m-%d %H:%M:%S}"


class Alert(models.Model):
    """One occurrence of a problem found by `alert_check`: opened (notified once) when the problem
    starts, resolved (notified once) when a later check no longer finds it."""

    key = models.CharField(max_length=200, help_text="Stable name of the problem, e.g. cron_late:reconcile.")
    title = models.CharField(max_length=500)
    detail = models.TextField(blank=True)
    runbook = models.CharField(max_length=100, blank=True, help_text="Anchor of the runbook entry.")
    opened_at = models.DateTimeField(auto_now_add=True)
    last_seen_at = models.DateTimeField()
    resolved_at = models.DateTimeField(null=True, blank=True)
    opened_notified = models.BooleanField(default=False)
    resolved_notified = models.BooleanField(default=False)

    class Meta:
        constraints = [
            # One open alert per problem: a second check that finds it again only refreshes last_seen_at.
            models.UniqueConstraint(fields=["key"], condition=Q(resolved_at__isnull=True), name="alert_one_open_per_key"),
        ]
        indexes = [models.Index(fields=["resolved_at", "key"])]
        ordering = ["-opened_at"]

    def __str__(self):
        return f"{self.key} ({'resolved' if self.resolved_at else 'open'})"
