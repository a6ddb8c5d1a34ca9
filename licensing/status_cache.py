"""The cached answer of the device-token status call, which can never be stale.

An answer is a pure function of three rows (the device's activation, its licence and the licence's
customer, read together in one statement on every call: ``selectors.activation_row``), the current
signing key and the clock. Each answer is stored with the exact row it was computed from (its
version) and the key id that signed its tokens, and is served only to a call that read an equal row
under the same key, before the answer's tokens are half-way to their expiry.

So nothing has to remember to invalidate it: a revoke, suspend, reissue, deactivation, dunning lock,
cancel, payment or plan change -- through a service, the admin, a queryset ``update()`` or another
process -- changes the row in the transaction that makes the change, so the first status call able
to see the committed write reads a different row and misses, and a call whose statement ran before
the commit reads the old row and gets the old answer, as the database told it. A new signing key
changes the key id. The only column left out of the version is the device's check-in time, which
each call fills in itself.

The licence's count of active devices (``License.active_devices``, which the answer reports with the
device limit) is a column of that row, written in the transaction of every activation and
deactivation: another device freeing a seat changes this device's version too. Only active devices
are cached: an inactive device's answer signs no device token, so there is little to save.

The store is per process and bounded (a few kB an entry): being keyed by the row, it needs nothing
shared between workers to be right; each worker signs at most once per device and state per half
token life.
"""
from __future__ import annotations

from datetime import datetime

from licensing.models import DeviceActivation
from licensing.tokens import remember

_ACTIVATION_ATTNAMES = [field.attname for field in DeviceActivation._meta.concrete_fields]
# The check-in time is written once a minute by the call itself: not part of the answer's version.
CHECKIN_INDEX = _ACTIVATION_ATTNAMES.index("last_checked_at")
DEACTIVATED_INDEX = _ACTIVATION_ATTNAMES.index("deactivated_at")
MAX_ENTRIES = 10_000

_ANSWERS: dict[tuple[int, str], tuple[tuple, str, float, dict]] = {}


def version(row: tuple) -> tuple:
    return row[:CHECKIN_INDEX] + (None,) + row[CHECKIN_INDEX + 1:]


def answer_get(*, license_id: int, device_id: str, version: tuple, kid: str, now: datetime) -> dict | None:
    entry = _ANSWERS.get((license_id, device_id))
    if entry is None:
        return None
    cached_version, cached_kid, fresh_until, body = entry
    if cached_kid != kid or now.timestamp() >= fresh_until or cached_version != version:
        return None
    return body


def answer_put(*, license_id: int, device_id: str, version: tuple, kid: str, body: dict, fresh_until: float) -> None:
    remember(_ANSWERS, (license_id, device_id), (version, kid, fresh_until, body), maximum=MAX_ENTRIES)


def clear() -> None:
    _ANSWERS.clear()
