"""Dunning's "now": the wall clock, or in sandbox mode (DUNNING_CLOCK=stripe_sandbox) the Stripe sandbox's
clock, so a demo that advances it sees the next step fall due and the locks follow. The sandbox's offset
from the wall clock is cached for a few seconds; an unreachable sandbox falls back to the wall clock."""
from __future__ import annotations

import logging
import time
from datetime import datetime, timedelta

from django.conf import settings
from django.utils import timezone

from billing_console.stripe.gateway import StripeGatewayError, sandbox_clock_now

log = logging.getLogger("dunning")

OFFSET_CACHE_SECONDS = 5.0
_offset: dict[str, tuple[float, timedelta]] = {}  # STRIPE_API_HOST -> (monotonic read time, sandbox - wall)


def dunning_now() -> datetime:
    now = timezone.now()
    if settings.DUNNING_CLOCK != "stripe_sandbox":
        return now
    host = getattr(settings, "STRIPE_API_HOST", "")
    cached = _offset.get(host)
    if cached is None or time.monotonic() - cached[0] > OFFSET_CACHE_SECONDS:
        try:
            offset = timedelta(seconds=sandbox_clock_now() - now.timestamp())
        except StripeGatewayError as exc:
            log.warning("Dunning uses the wall clock: %s", exc.message)
            return now
        cached = _offset[host] = (time.monotonic(), offset)
    return now + cached[1]
