"""Reads shared by the licence API, the admin and the webhooks.

A licence's status is the core's entitlement (subscription, dunning lock, grace: never re-derived
here) with the licence's own switches and the device's activation on top.
"""
from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from functools import lru_cache

from django.db import connection
from django.utils import timezone

from billing_console.models import Customer
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
    try:
        return License.objects.select_related("customer").get(key_hash=key_hash(normalized))
    except License.DoesNotExist:
        return None


def activation_for(*, license: License, device_id: str) -> DeviceActivation | None:
    try:
        return DeviceActivation.objects.get(license=license, device_id=device_id)
    except DeviceActivation.DoesNotExist:
        return None


def activation_with_license(*, license_id: int, device_id: str) -> DeviceActivation | None:
    """One query: the activation with its licence and customer (the device-token path of status).

    The hot path of the licence API. It is the ORM's own select_related query, compiled once per
    database connection vendor instead of on every call (compiling a three-table join cost more CPU
    than running it), with the backend's converters applied as the ORM would.
    """
    sql, columns = _hot_query()
    with connection.cursor() as cursor:
        cursor.execute(sql, [license_id, device_id])
        row = cursor.fetchone()
    if row is None:
        return None
    values = list(row)
    for index, converters, expression in columns:
        for converter in converters:
            values[index] = converter(values[index], expression, connection)
    n_act, n_lic = len(_ACTIVATION_FIELDS), len(_LICENSE_FIELDS)
    activation = DeviceActivation.from_db(connection.alias, None, values[:n_act])
    lic = License.from_db(connection.alias, None, values[n_act:n_act + n_lic])
    lic.customer = Customer.from_db(connection.alias, None, values[n_act + n_lic:])
    activation.license = lic
    return activation


_ACTIVATION_FIELDS = DeviceActivation._meta.concrete_fields
_LICENSE_FIELDS = License._meta.concrete_fields
_CUSTOMER_FIELDS = Customer._meta.concrete_fields


@lru_cache(maxsize=4)
def _compiled(vendor: str) -> tuple[str, tuple]:
    query = (DeviceActivation.objects.select_related("license__customer")
             .filter(license_id=-1).filter(device_id="?").order_by()).query
    compiler = query.get_compiler(connection=connection)
    sql, params = compiler.as_sql()
    if list(params) != [-1, "?"]:
        raise RuntimeError("unexpected parameters; update activation_with_license")
    # select_related puts the three models' concrete fields in this order; check it, never assume.
    expected = [*_ACTIVATION_FIELDS, *_LICENSE_FIELDS, *_CUSTOMER_FIELDS]
    selected = [col.target for col, _, _ in compiler.select]
    if selected != expected:
        raise RuntimeError("select_related column order changed; update activation_with_license")
    columns = []
    for index, (col, _, _) in enumerate(compiler.select):
        converters = tuple(connection.ops.get_db_converters(col) + col.get_db_converters(connection))
        if converters:
            columns.append((index, converters, col))
    return sql, tuple(columns)


def _hot_query() -> tuple[str, tuple]:
    return _compiled(connection.vendor)


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


def device_token_customer(token: str, *, now: datetime | None = None):
    """The customer a device access token speaks for (an active activation of the licence generation it was
    minted under), or TokenInvalid. The desktop app opens the billing portal with it."""
    from licensing.tokens import DEVICE, TokenInvalid, token_verify

    claims = token_verify(token, typ=DEVICE, now=now)
    license_id, device_id = claims.get("license"), claims.get("device")
    if not isinstance(license_id, int) or isinstance(license_id, bool) or not isinstance(device_id, str):
        raise TokenInvalid("malformed")
    activation = activation_with_license(license_id=license_id, device_id=device_id)
    if activation is None or not activation.is_active or activation.license.key_generation != claims.get("gen"):
        raise TokenInvalid("no_activation")
    return activation.license.customer
