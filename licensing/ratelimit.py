"""Fixed-window rate limits in Django's cache (the database or Redis: shared by every worker).

Buckets are named by a hash, never by a licence key in clear.
"""
from __future__ import annotations

import hashlib
import logging
import math
import time

from django.conf import settings
from django.core.cache import cache

log = logging.getLogger("licensing")


def client_address(request) -> str:
    """The socket's address, or the one the trusted proxies recorded in X-Forwarded-For."""
    hops = settings.TRUSTED_PROXY_HOPS
    if hops > 0:
        forwarded = [part.strip() for part in request.META.get("HTTP_X_FORWARDED_FOR", "").split(",") if part.strip()]
        if len(forwarded) >= hops:
            return forwarded[-hops]
    return request.META.get("REMOTE_ADDR", "") or "unknown"


def bucket(kind: str, value: str) -> str:
    return f"{kind}:{hashlib.sha256(value.encode()).hexdigest()[:32]}"


def hit(name: str, *, limit: int, window: int) -> int:
    """Count one request in `name`'s current window; returns seconds to wait (0: allowed).

    Fails open when the cache is unreachable: the licence API must not go down with the cache.
    """
    now = time.time()
    window_no = int(now // window)
    key = f"bc:rl:{name}:{window_no}"
    try:
        if cache.add(key, 1, timeout=window + 1):
            count = 1
        else:
            count = cache.incr(key)
    except ValueError:  # the window expired between add and incr: this request starts the next one
        cache.add(key, 1, timeout=window + 1)
        count = 1
    except Exception as exc:
        log.warning("rate limit cache unavailable: %s", type(exc).__name__, extra={"event": "rate_limit_cache_error"})
        return 0
    if count <= limit:
        return 0
    return max(1, math.ceil((window_no + 1) * window - now))
