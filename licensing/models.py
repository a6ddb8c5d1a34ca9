"""Licences and device activations.

A licence key is shown once (email, admin message at reissue) and stored only as a SHA-256 hash
plus a short prefix support can search by. Entitlement values (plan, devices, offline grace) come
from the core's entitlement selector and settings.PLANS; the licence's own status is support's
switch on top of that (suspend, revoke).
"""
from django.db import models
from django.db.models import Q

from billing_console.models import Customer


class License(models.Model):
    class Status(models.TextChoices):
        ACTIVE = "active", "Active"
        SUSPENDED = "suspended", "Suspended"
        REVOKED = "revoked", "Revoked"

    class KeyDelivery(models.TextChoices):
        PENDING = "pending", "Pending"
        SENT = "sent", "Emailed"
        FAILED = "failed", "Email failed (reissue to send a new key)"

    customer = models.ForeignKey(Customer, on_delete=models.PROTECT, related_name="licenses")
    subscription_id = models.CharField(max_length=255, unique=True)
    key_hash = models.CharField(max_length=64, unique=True, editable=False)
    key_prefix = models.CharField(max_length=16, db_index=True, editable=False,
                                  help_text="First characters of the key, for support to search by.")
    # Bumped at every reissue: device tokens minted under an earlier key stop being accepted online.
    key_generation = models.PositiveIntegerField(default=1, editable=False)
    key_delivery = models.CharField(max_length=16, choices=KeyDelivery.choices, default=KeyDelivery.PENDING)
    plan = models.CharField(max_length=32)
    max_devices = models.PositiveIntegerField()
    # Devices active now. Kept in the licence's own row, written under its lock by every service that activates
    # or deactivates a device (licensing/services.py), so the status call reads it in its one statement and a
    # change is part of its cached answer's version. Can exceed max_devices after a downgrade.
    active_devices = models.PositiveIntegerField(default=0, editable=False)
    offline_grace_days = models.PositiveIntegerField()
    status = models.CharField(max_length=16, choices=Status.choices, default=Status.ACTIVE)
    status_reason = models.CharField(max_length=255, blank=True)
    # Set by a rebuild (keys regenerated without the customer knowing): support reissues and emails.
    needs_reissue = models.BooleanField(default=False)
    issued_at = models.DateTimeField(auto_now_add=True)
    reissued_at = models.DateTimeField(null=True, blank=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["-issued_at"]
        indexes = [models.Index(fields=["status"])]
        verbose_name = "licence"
        verbose_name_plural = "licences"

    def __str__(self):
        return f"{self.key_prefix}… ({self.plan}, {self.status})"

    @property
    def devices_over_limit(self) -> int:
        """Active devices beyond the limit: a downgrade keeps them working until the customer deactivates some."""
        return max(self.active_devices - self.max_devices, 0)


class DeviceActivation(models.Model):
    license = models.ForeignKey(License, on_delete=models.CASCADE, related_name="activations")
    device_id = models.CharField(max_length=128)
    name = models.CharField(max_length=200, blank=True)
    platform = models.CharField(max_length=64, blank=True)
    activated_at = models.DateTimeField()
    last_checked_at = models.DateTimeField(null=True, blank=True)
    deactivated_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["-activated_at"]
        constraints = [
            models.UniqueConstraint(fields=["license", "device_id"], name="activation_license_device_unique"),
        ]
        indexes = [
            models.Index(fields=["device_id"]),
            models.Index(fields=["license"], condition=Q(deactivated_at__isnull=True), name="activation_active_idx"),
        ]

    def __str__(self):
        return f"{self.name or self.device_id} ({'active' if self.is_active else 'deactivated'})"

    @property
    def is_active(self) -> bool:
        return self.deactivated_at is None
