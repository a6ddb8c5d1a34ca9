"""Re-run Stripe events through the same processing path as live webhooks (support, incidents)."""
from datetime import timezone as dt_timezone

from django.core.management.base import BaseCommand, CommandError
from django.utils import timezone
from django.utils.dateparse import parse_date, parse_datetime

from billing_console.models import AuditEvent
from billing_console.stripe.inbox import webhook_events_replay, webhook_events_selector
from billing_console.wording import counted


class Command(BaseCommand):
    help = "Replay stored Stripe events: --failed, --id evt_... (repeatable), --since YYYY-MM-DD[THH:MM]."

    def add_arguments(self, parser):
        parser.add_argument("--failed", action="store_true", help="Only events in the failed state.")
        parser.add_argument("--id", action="append", dest="ids", default=[], help="A Stripe event id (evt_...).")
        parser.add_argument("--since", help="Only events Stripe created at or after this date/time (UTC).")

    def handle(self, *args, failed, ids, since, **options):
        since_at = None
        if since:
            since_at = parse_datetime(since)
            if since_at is None and parse_date(since):
                since_at = parse_datetime(f"{since}T00:00:00")
            if since_at is None:
                raise CommandError(f"--since {since!r} is not a date (YYYY-MM-DD) or date-time.")
            if timezone.is_naive(since_at):
                since_at = timezone.make_aware(since_at, dt_timezone.utc)
        if not (failed or ids or since_at):
            raise CommandError("Say which events: --failed, --id evt_... or --since DATE.")
        events = list(webhook_events_selector(failed_only=failed, stripe_ids=ids, since=since_at))
        missing = set(ids) - {e.stripe_id for e in events}
        if missing:
            self.stderr.write(f"Not stored here (use catch-up from Stripe): {', '.join(sorted(missing))}")
        counts = webhook_events_replay(events=events, actor_type=AuditEvent.ActorType.SYSTEM, actor="replay_events")
        self.stdout.write(f"{counted(len(events), 'event')}: {counts['processed']} processed, {counts['ignored']} ignored, "
                          f"{counts['failed']} failed, "
                          f"{counts['skipped']} skipped")
        if counts["failed"]:
            raise CommandError("Some events failed again; see the admin (Webhook events, filter failed).")
