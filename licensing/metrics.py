"""Licence API requests by HTTP status, for /metrics.

The API keeps no row per request, so each answer adds one to a counter in Redis (one INCR, no reply
awaited beyond Redis's own, ~0.1 ms on the same network). Without Redis (the database cache) nothing is
counted: a database write per licence call would cost more than the call, and the family says so with
no samples. Counters are monotonic totals since Redis last lost its data.
"""
from __future__ import annotations

import logging

from django.core.cache import caches
from django.core.cache.backends.redis import RedisCache
from prometheus_client.core import CounterMetricFamily

log = logging.getLogger("licensing")
KEY = "metrics:license_api:{status}"
STATUSES = (200, 400, 401, 403, 404, 405, 409, 410, 413, 422, 429, 500, 503)


def _redis():
    cache = caches["default"]
    if not isinstance(cache, RedisCache):
        return None, None
    from billing_console.ratelimit import _redis_client

    return cache, _redis_client(cache)


def license_request_count(status: int) -> None:
    cache, client = _redis()
    if client is None:
        return
    try:
        client.incr(cache.make_and_validate_key(KEY.format(status=int(status))))
    except Exception as exc:  # a metric never fails the licence call
        log.warning("licence API counter not updated: %s", type(exc).__name__)


def license_metrics():
    family = CounterMetricFamily("billing_license_api_requests", "Licence API answers by HTTP status "
                                 "(counted in Redis; no samples without Redis).", labels=["status"])
    cache, client = _redis()
    if client is not None:
        keys = [cache.make_and_validate_key(KEY.format(status=s)) for s in STATUSES]
        for status, value in zip(STATUSES, client.mget(keys)):
            if value is not None:
                family.add_metric([str(status)], float(int(value)))
    return [family]
