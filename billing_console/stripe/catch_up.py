"""Catch up on webhooks Stripe could not deliver (endpoint down, wrong secret, DNS...).

Stripe keeps events for 30 days and lists them through its Events API. Each listed event goes into
the same inbox as a live webhook (`webhook_event_store`, once per event id) and is applied by the
same worker code (`webhook_event_process`), oldest first, so a caught-up event has exactly the
effect a delivered one would have had, and running the catch-up twice changes nothing.
"""
from __future__ import annotations

import json
import logging
from dataclasses import dataclass, field
from datetime import datetime, timedelta

from django.core.serializers.json import DjangoJSONEncoder
from django.utils import timezone

from billing_console.errors import ServiceError
from billing_console.models import WebhookEvent
from billing_console.stripe import gateway as stripe_gateway
from billing_console.stripe.inbox import webhook_event_process, webhook_event_store

log = logging.getLogger("billing_console.catch_up")

# Stripe's Events API only returns events of the last 30 days.
EVENT_RETENTION = timedelta(days=30)


class CatchUpError(ServiceError):
    """Bad input (a window Stripe cannot serve); the message says what to do instead."""


@dataclass
class CatchUpReport:
    since: datetime | None
    listed: int = 0
    new: int = 0
    already_processed: int = 0
    processed: int = 0
    ignored: int = 0
    failed: int = 0
    skipped: int = 0
    failed_ids: list[str] = field(default_factory=list)

    def counts(self) -> dict[str, int]:
        return {"listed": self.listed, "new": self.new, "already_processed": self.already_processed,
                "processed": self.processed, "ignored": self.ignored, "failed": self.failed, "skipped": self.skipped}


def catch_up_window(*, since: datetime | None = None, days: int | None = None, now: datetime | None = None) -> datetime | None:
    """The start of the window asked for (None: every event Stripe marks as not delivered)."""
    now = now or timezone.now()
    if since is not None and days is not None:
        raise CatchUpError("invalid_window", "Give --since or --days, not both.")
    if days is not None:
        if days < 1:
            raise CatchUpError("invalid_window", "--days must be at least 1.")
        since = now - timedelta(days=days)
    if since is None:
        return None
    if timezone.is_naive(since):
        since = timezone.make_aware(since, timezone.utc)
    if since < now - EVENT_RETENTION:
        raise CatchUpError("invalid_window", f"Stripe keeps events for {EVENT_RETENTION.days} days only; {since:%Y-%m-%d %H:%M} UTC is "
                           "further back. Catch up the last 30 days, then run `python manage.py rebuild_from_stripe` "
                           "or resync the customers concerned for anything older.")
    if since > now:
        raise CatchUpError("invalid_window", f"{since.isoformat()} is in the future.")
    return since


def _as_delivered(event: dict) -> dict:
    """The event as a webhook would carry it: stripe-python turns decimal strings (unit_amount_decimal)
    into Decimal, which the inbox's JSON column cannot hold; Stripe sends them as strings."""
    return json.loads(json.dumps(event, cls=DjangoJSONEncoder))


def stripe_events_catch_up(*, since: datetime | None = None) -> CatchUpReport:
    """List the events (since `since`, else those whose delivery failed) and apply every one the console
    has not processed yet, in the order Stripe created them."""
    params: dict = {"created": {"gte": int(since.timestamp())}} if since else {"delivery_success": False}
    # Stripe lists newest first; reversing keeps Stripe's order for events created in the same second.
    listed = [_as_delivered(e) for e in stripe_gateway.events_list(params)]
    events = sorted(reversed(listed), key=lambda e: e.get("created") or 0)
    report = CatchUpReport(since=since, listed=len(events))
    for event in events:
        # Look before storing: a listing is not a delivery, so an event already here is not counted again.
        row = WebhookEvent.objects.filter(stripe_id=event.get("id")).only("pk", "status", "stripe_id").first()
        if row is None:
            row, created = webhook_event_store(event=event, enqueue=False)
            report.new += int(created)
        if row.status in (WebhookEvent.Status.PROCESSED, WebhookEvent.Status.IGNORED):
            report.already_processed += 1
            continue
        # A failed event waiting for its backoff is applied now: the operator asked for it.
        outcome = webhook_event_process(webhook_event_id=row.pk, force=row.status == WebhookEvent.Status.FAILED)
        setattr(report, outcome, getattr(report, outcome) + 1)
        if outcome == "failed":
            report.failed_ids.append(row.stripe_id)
    log.info("stripe catch-up: %s", report.counts(),
             extra={"event": "stripe_catch_up", "since": since.isoformat() if since else None, "counts": report.counts()})
    return report
