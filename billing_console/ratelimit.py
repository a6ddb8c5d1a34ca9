"""Fixed-window rate limits in Django's cache (the database or Redis: shared by every worker),
for the licence API and the customer pages.

All the buckets of one request are counted in one call, which on Redis is one pipelined round
trip (INCR + EXPIRE per bucket, written straight to a pooled connection) instead of Django's
add/exists/incr per bucket: the limiter runs on every licence call, so its cost is the API's.
Buckets are named by a hash, never by a key in clear.
"""
from __future__ import annotations

import hashlib
import logging
import math
import time
from collections.abc import Callable

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


def _resp(*args: bytes) -> bytes:
    """One Redis command in RESP, written directly: redis-py's encoder was most of the limiter's Python time."""
    return b"*%d\r\n" % len(args) + b"".join(b"$%d\r\n%s\r\n" % (len(arg), arg) for arg in args)


def _count_start(keys: list[str], window: int) -> Callable[[], list[int]]:
    """Send the counts now; the returned function reads them (it must be called exactly once)."""
    cache = caches["default"]
    if isinstance(cache, RedisCache):
        pool = _redis_client(cache).connection_pool
        expire = str(window + 1).encode()
        commands = []
        for key in keys:
            full_key = cache.make_key(key).encode()  # hex digests and digits: nothing to validate
            commands += [_resp(b"INCR", full_key), _resp(b"EXPIRE", full_key, expire)]
        connection = pool.get_connection()
        try:
            connection.send_packed_command([b"".join(commands)])
        except BaseException:
            connection.disconnect()
            pool.release(connection)
            raise

        def read() -> list[int]:
            try:
                replies = [connection.read_response() for _ in commands]
            except BaseException:
                connection.disconnect()  # replies left unread: the socket must not be reused
                raise
            finally:
                pool.release(connection)
            return replies[::2]

        return read
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
    return lambda: counts


def hit_start(limits: list[tuple[str, int]], *, window: int) -> Callable[[], int]:
    """Count one request in each (bucket, limit) and return the function that gives the seconds to wait
    (0: allowed), to be called exactly once.

    On Redis the counts are sent at once and read by that function, so a caller can do its own read
    (the licence status call's database query) while Redis answers: one round trip's wait instead of
    two. Fails open when the cache is unreachable: the licence API must not go down with the cache.
    """
    now = time.time()
    window_no = int(now // window)
    keys = [f"bc:rl:{name}:{window_no}" for name, _ in limits]
    try:
        read = _count_start(keys, window)
    except Exception as exc:
        _unavailable(exc)
        return lambda: 0

    def finish() -> int:
        try:
            counts = read()
        except Exception as exc:
            _unavailable(exc)
            return 0
        if all(count <= limit for count, (_, limit) in zip(counts, limits)):
            return 0
        return max(1, math.ceil((window_no + 1) * window - now))

    return finish


def hit(limits: list[tuple[str, int]], *, window: int) -> int:
    """Count one request in each (bucket, limit); returns seconds to wait (0: allowed)."""
    return hit_start(limits, window=window)()


def _unavailable(exc: Exception) -> None:
    log.warning("rate limit cache unavailable: %s", type(exc).__name__, extra={"event": "rate_limit_cache_error"})
