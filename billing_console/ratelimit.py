"""Fixed-window rate limits in Django's cache (the database or Redis: shared by every worker),
for the licence API and the customer pages.

All the buckets of one request are counted in one call, which on Redis is one pipelined round
trip (INCR + EXPIRE per bucket) instead of Django's add/exists/incr per bucket: the limiter runs on
every licence call, so its cost is the API's. Buckets are named by a hash, never by a key in clear.
"""
from __future__ import annotations

import hashlib
import logging
import math
import time

from django.conf import settings
from django.core.cache import caches
from django.core.cache.backends.redis import RedisCache

log = logging.getLogger("billing_console.ratelimit")


def client_address(request) -> str:
    """The socket's address, or the one the trusted proxies recorded in X-Forwarded-For."""
    hops = settings.TRUSTED_PROXY_HOPS
    if hops > 0:
        forwarded = [part.strip() for part in request.META.get("HTTP_X_FORWARDED_FOR", "").split(",") if part.strip()]
        if len(forwarded) >= hops:
            return forwarded[-hops]
    return request.META.get("REMOTE_ADDR", "") or "unknown"


def bucket(kind: str, value: str) -> str:
    # surrogatepass: a lone surrogate from JSON input must hash, not crash, before validation rejects it.
    return f"{kind}:{hashlib.sha256(value.encode('utf-8', 'surrogatepass')).hexdigest()[:32]}"


def _redis_client(cache: RedisCache):
    """Django's RedisCache builds a new client object (about 200 callbacks) on every call; keep one per
    cache instance (one per thread) on the same connection pool."""
    client = getattr(cache, "_bc_ratelimit_client", None)
    if client is None:
        client = cache._bc_ratelimit_client = cache._cache.get_client(write=True)
    return client


def _count(keys: list[str], window: int) -> list[int]:
    cache = caches["default"]
    if isinstance(cache, RedisCache):
        pipe = _redis_client(cache).pipeline(transaction=False)
        for key in keys:
            full_key = cache.make_and_validate_key(key)
            pipe.incr(full_key)
            pipe.expire(full_key, window + 1)
        return pipe.execute()[::2]
    counts = []
    for key in keys:
        if cache.add(key, 1, timeout=window + 1):
            counts.append(1)
            continue
        try:
            counts.append(cache.incr(key))
        except ValueError:  # the entry expired between add and incr: this request starts it again
            cache.add(key, 1, timeout=window + 1)
            counts.append(1)
    return counts


def hit(limits: list[tuple[str, int]], *, window: int) -> int:
    """Count one request in each (bucket, limit); returns seconds to wait (0: allowed).

    Fails open when the cache is unreachable: the licence API must not go down with the cache.
    """
    now = time.time()
    window_no = int(now // window)
    keys = [f"bc:rl:{name}:{window_no}" for name, _ in limits]
    try:
        counts = _count(keys, window)
    except Exception as exc:
        log.warning("rate limit cache unavailable: %s", type(exc).__name__, extra={"event": "rate_limit_cache_error"})
        return 0
    if all(count <= limit for count, (_, limit) in zip(counts, limits)):
        return 0
    return max(1, math.ceil((window_no + 1) * window - now))
