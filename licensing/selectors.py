"""Reads shared by the licence API, the admin and the webhooks.

A licence's status is the core's entitlement (subscription, dunning lock, grace: never re-derived
here) with the licence's own switches and the device's activation on top.
"""
from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
import sys
from functools import lru_cache

from django.conf import settings
from django.db import DEFAULT_DB_ALIAS, InterfaceError, OperationalError, connection, connections
from django.utils import timezone

from billing_console.models import Customer
from billing_console.selectors import Entitlement, Reason as CoreReason, customer_entitlement
from billing_console.wording import device_limit_words
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
    """One query: the activation with its licence and customer (the device-token path of status)."""
    row = activation_row(license_id=license_id, device_id=device_id)
    return None if row is None else activation_from_row(row)


def activation_row(*, license_id: int, device_id: str) -> tuple | None:
    """The activation, licence and customer columns in one row, converted as the ORM would.

    The hot path of the licence API. It is the ORM's own select_related query, compiled once per
    database connection vendor instead of on every call (compiling a three-table join cost more CPU
    than running it). The row is also the version of the cached status answer (licensing/status_cache.py).
    """
    db = connections[DEFAULT_DB_ALIAS]  # once: every attribute of the `connection` proxy is a lookup
    sql, columns = _compiled(db.vendor)
    params = [license_id, device_id]
    if db.vendor == "postgresql" and settings.LICENSE_STATUS_PREPARED_STATEMENT:
        row = _fetch_prepared(db, sql, params)
    else:
        with db.cursor() as cursor:
            cursor.execute(sql, params)
            row = cursor.fetchone()
    if row is None:
        return None
    if not columns:
        return tuple(row)
    values = list(row)
    for index, converters, expression in columns:
        for converter in converters:
            values[index] = converter(values[index], expression, db)
    return tuple(values)


def _fetch_prepared(db, sql: str, params: list):
    """Run the hot query as a server-side prepared statement, the statement doubling as the health check.

    Parsing and planning the three-table join cost PostgreSQL several times its execution; prepared
    once per connection, it is only executed (and its row read in binary, without Python datetime
    parsing). Django leaves psycopg's automatic preparation off (transaction-pooling PgBouncer before
    1.21 loses prepared statements: LICENSE_STATUS_PREPARED_STATEMENT=false then); this prepares only
    the statement it is asked to.

    CONN_HEALTH_CHECKS costs a SELECT 1 round trip before the first query of every request. Here the
    query itself is the check: a reused connection that fails it is replaced and the read (nothing
    else happened on the connection yet) is run once more, which is what the check would have done.
    """
    retry = db.health_check_enabled and not db.health_check_done and db.connection is not None \
        and not db.in_atomic_block
    if not retry:
        db.close_if_health_check_failed()
    try:
        row = _execute_prepared(db, sql, params)
    except (OperationalError, InterfaceError):
        if not retry:
            raise
        db.close()
        row = _execute_prepared(db, sql, params)
    db.health_check_done = True
    return row


def _execute_prepared(db, sql: str, params: list):
    db.ensure_connection()
    raw = db.connection
    if raw.prepare_threshold is None:
        # Not None, or psycopg refuses to prepare even when asked; this high, it never prepares on its own.
        raw.prepare_threshold = sys.maxsize
    cursor = _prepared_cursor_class()(raw)
    wrapped = db.make_debug_cursor(cursor) if db.queries_logged else db.make_cursor(cursor)
    with wrapped:
        wrapped.execute(sql, params)
        return wrapped.fetchone()


def activation_from_row(row: tuple) -> DeviceActivation:
    n_act, n_lic = len(_ACTIVATION_FIELDS), len(_LICENSE_FIELDS)
    activation = DeviceActivation.from_db(connection.alias, None, row[:n_act])
    lic = License.from_db(connection.alias, None, row[n_act:n_act + n_lic])
    lic.customer = Customer.from_db(connection.alias, None, row[n_act + n_lic:])
    activation.license = lic
    return activation


_ACTIVATION_FIELDS = DeviceActivation._meta.concrete_fields
_LICENSE_FIELDS = License._meta.concrete_fields
_CUSTOMER_FIELDS = Customer._meta.concrete_fields
_BINARY_SAFE = {"AutoField", "BigAutoField", "BooleanField", "CharField", "TextField", "DateTimeField", "ForeignKey",
                "IntegerField", "BigIntegerField", "PositiveIntegerField", "PositiveSmallIntegerField",
                "SmallIntegerField"}


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


@lru_cache(maxsize=1)
def _prepared_cursor_class():
    import psycopg

    # Binary results are loaded by psycopg's C loaders; every column of the three models is a type
    # whose binary and text loads give the ORM the same values (no JSON, whose binary load Django
    # does not expect).
    binary = all(field.get_internal_type() in _BINARY_SAFE
                 for field in (*_ACTIVATION_FIELDS, *_LICENSE_FIELDS, *_CUSTOMER_FIELDS))

    class PreparedCursor(psycopg.Cursor):
        def execute(self, query, params=None, *, prepare=None, binary=binary):
            return super().execute(query, params, prepare=True, binary=binary)

    return PreparedCursor


def active_device_count(license: License) -> int:
    """Counted from the activation rows (the write paths, under the licence's lock); readers use
    License.active_devices, which those paths keep equal to it."""
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


def license_limit_words(license: License, entitlement: Entitlement) -> str:
    """The customer's words for a licence with more active devices than its limit (after a downgrade); ""
    within the limit, or when the licence does not work now (its devices do not "keep working" then)."""
    if license.active_devices <= license.max_devices or not license_entitlement_reason(license, entitlement)[0]:
        return ""
    return device_limit_words(license.active_devices, license.max_devices)


def license_state(*, license: License, activation: DeviceActivation | None, now: datetime | None = None,
                  device_count: int | None = None) -> LicenseState:
    """The status a device sees. A device that is not active is told TOO_MANY_DEVICES or NO_DEVICE from the
    licence's active_devices (in its row, no query), or `device_count` when given."""
    entitlement = customer_entitlement(license.customer, now=now)
    active, reason = license_entitlement_reason(license, entitlement)
    if active and (activation is None or not activation.is_active):
        count = license.active_devices if device_count is None else device_count
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
