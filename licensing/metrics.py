"""Licence API requests by HTTP status, for /metrics.

The API keeps no row per request. Each answer adds one to this process's own tally, and the tally goes
to Redis (one INCRBY per status, one pipelined round trip) at most once a second, by the first answer
after the second is up, by a /metrics scrape in this process, and at exit: so a licence call costs no
Redis write of its own, and a worker's figures reach /metrics within about a second of its next call
(a worker killed with SIGKILL loses at most its last second). Without Redis (the database cache) nothing
is counted: a database write per licence call would cost more than the call, and the family says so
with no samples. Counters are monotonic totals since Redis last lost its data.
"""
from __future__ import annotations

import atexit
import logging
import threading
import time
from collections import Counter

from django.core.cache import caches
from django.core.cache.backends.redis import RedisCache
from prometheus_client.core import CounterMetricFamily

log = logging.getLogger("licensing")
KEY = "metrics:license_api:{status}"
STATUSES = (200, 400, 401, 403, 404, 405, 409, 410, 413, 422, 429, 500, 503)
FLUSH_SECONDS = 1.0

_lock = threading.Lock()
_pending: Counter = Counter()
_last_flush = time.monotonic()


def _redis():
    cache = caches["default"]
    if not isinstance(cache, RedisCache):
        return None, None
    from billing_console.ratelimit import _redis_client

    return cache, _redis_client(cache)


def license_request_count(status: int) -> None:
    """Tally one answer; send the tally when the last send is FLUSH_SECONDS old."""
    global _last_flush
    now = time.monotonic()
    with _lock:
        _pending[int(status)] += 1
        if now - _last_flush < FLUSH_SECONDS:
            return
        _last_flush = now
    license_request_counts_flush()


def license_request_counts_flush() -> int:
    """Send this process's tally to Redis in one round trip; returns the answers sent."""
    cache, client = _redis()
    with _lock:
        if client is None:
            _pending.clear()
            return 0
        tally = dict(_pending)
        _pending.clear()
    if not tally:
        return 0
    try:
        pipe = client.pipeline(transaction=False)
        for status, n in tally.items():
            pipe.incrby(cache.make_and_validate_key(KEY.format(status=status)), n)
        pipe.execute()
    except Exception as exc:  # a metric never fails the licence call; the tally is kept for the next send
        with _lock:
            _pending.update(tally)
        log.warning("licence API counter not updated: %s", type(exc).__name__)
        return 0
    return sum(tally.values())


def license_metrics():
    license_request_counts_flush()  # this process's own answers are counted up to the scrape
    family = CounterMetricFamily("billing_license_api_requests", "Licence API answers by HTTP status "
                                 "(counted in Redis; no samples without Redis).", labels=["status"])
    cache, client = _redis()
    if client is not None:
        keys = [cache.make_and_validate_key(KEY.format(status=s)) for s in STATUSES]
        for status, value in zip(STATUSES, client.mget(keys)):
            if value is not None:
                family.add_metric([str(status)], float(int(value)))
    return [family]


@atexit.register
def _flush_at_exit() -> None:
    try:
        license_request_counts_flush()
    except Exception:  # interpreter shutdown: Django or Redis may already be gone
        pass
