"""Fixed-window limits for the recovery page, in Django's cache (the database or Redis: every worker
shares them). Buckets are named by a hash, never by an email in clear."""
from __future__ import annotations

import hashlib
import logging
import math
import time

from django.conf import settings
from django.core.cache import cache

log = logging.getLogger("billing_console.pages")


def client_address(request) -> str:
    """The socket's address, or the one the trusted proxies recorded in X-Forwarded-For."""
    hops = settings.TRUSTED_PROXY_HOPS
    if hops > 0:
        forwarded = [p.strip() for p in request.META.get("HTTP_X_FORWARDED_FOR", "").split(",") if p.strip()]
        if len(forwarded) >= hops:
            return forwarded[-hops]
    return request.META.get("REMOTE_ADDR", "") or "unknown"


def over_limit(limits: list[tuple[str, str, int]], *, window: int) -> int:
    """Count one request in each (kind, value, limit) bucket; seconds to wait, 0 when allowed.
    Fails open when the cache is down: recovery must not go down with it."""
    now = time.time()
    window_no = int(now // window)
    exceeded = False
    try:
        for kind, value, limit in limits:
            key = f"bc:rl:{kind}:{hashlib.sha256(value.encode()).hexdigest()[:32]}:{window_no}"
            if cache.add(key, 1, timeout=window + 1):
                count = 1
            else:
                try:
                    count = cache.incr(key)
                except ValueError:  # expired between add and incr: this request starts the window again
                    cache.add(key, 1, timeout=window + 1)
                    count = 1
            exceeded = exceeded or count > limit
    except Exception as exc:
        log.warning("rate limit cache unavailable: %s", type(exc).__name__, extra={"event": "rate_limit_cache_error"})
        return 0
    return max(1, math.ceil((window_no + 1) * window - now)) if exceeded else 0
