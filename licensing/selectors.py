"""Reads shared by the licence API, the admin and the webhooks.

A licence's status is the core's entitlement (subscription, dunning lock, grace: never re-derived
here) with the licence's own switches and the device's activation on top.
"""
from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta

from django.utils import timezone

from billing_console.selectors import Entitlement, Reason as CoreReason, customer_entitlement
from licensing.keys import key_hash, key_normalize
from licensing.models import DeviceActivation, License

FALLBACK_TOKEN_LIFETIME = timedelta(hours=24)
# Past-due states still work, but tokens are kept short so a hard lock reaches devices within a day.
SHORT_LIVED_REASONS = {CoreReason.PAST_DUE, CoreReason.PAST_DUE_SOFT_LOCK}


class Reason(CoreReason):
    SUSPENDED = "SUSPENDED"
    REVOKED = "REVOKED"
    NO_DEVICE = "NO_DEVICE"
    TOO_MANY_DEVICES = "TOO_MANY_DEVICES"


@dataclass(frozen=True)
class LicenseState:
    license: License
    activation: DeviceActivation | None
    entitlement: Entitlement
    active: bool
    reason: str

    @property
    def token_expires_at(self) -> datetime:
        return token_expiry(self.entitlement, self.reason)


def license_by_key(raw_key: str) -> License | None:
    normalized = key_normalize(raw_key)
    if normalized is None:
        return None
    return License.objects.select_related("customer").filter(key_hash=key_hash(normalized)).first()


def activation_for(*, license: License, device_id: str) -> DeviceActivation | None:
    return DeviceActivation.objects.filter(license=license, device_id=device_id).first()


def activation_with_license(*, license_id: int, device_id: str) -> DeviceActivation | None:
    """One query: the activation with its licence and customer (the device-token path of status)."""
    return (DeviceActivation.objects.select_related("license__customer")
            .filter(license_id=license_id, device_id=device_id).first())


def active_device_count(license: License) -> int:
    return DeviceActivation.objects.filter(license=license, deactivated_at__isnull=True).count()


def license_entitlement_reason(license: License, entitlement: Entitlement) -> tuple[bool, str]:
    """(active, reason) of the licence itself, before looking at any device."""
    if license.status == License.Status.REVOKED:
        return False, Reason.REVOKED
    if license.status == License.Status.SUSPENDED:
        return False, Reason.SUSPENDED
    if license.customer.subscription_id != license.subscription_id:
        # The customer moved to another subscription: this one has ended (its own licence is the new one).
        return False, Reason.CANCELED
    return entitlement.entitled, entitlement.reason


def license_state(*, license: License, activation: DeviceActivation | None, now: datetime | None = None,
                  device_count: int | None = None) -> LicenseState:
    """The status a device sees. `device_count` is only read when the device is not active."""
    entitlement = customer_entitlement(license.customer, now=now)
    active, reason = license_entitlement_reason(license, entitlement)
    if active and (activation is None or not activation.is_active):
        count = active_device_count(license) if device_count is None else device_count
        active, reason = False, Reason.TOO_MANY_DEVICES if count >= license.max_devices else Reason.NO_DEVICE
    return LicenseState(license, activation, entitlement, active, reason)


def token_expiry(entitlement: Entitlement, reason: str, *, now: datetime | None = None) -> datetime:
    """Period end plus offline grace when known, else 24 hours; never permanent."""
    now = now or timezone.now()
    fallback = now + FALLBACK_TOKEN_LIFETIME
    grace_ends_at = entitlement.grace_ends_at
    if grace_ends_at is None or grace_ends_at <= now:
        return fallback
    if reason in SHORT_LIVED_REASONS:
        return min(grace_ends_at, fallback)
    return grace_ends_at
