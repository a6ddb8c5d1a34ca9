from datetime import datetime

from django.core.management.base import BaseCommand, CommandError

from billing_console.stripe.catch_up import CatchUpError, catch_up_window, stripe_events_catch_up
from billing_console.stripe.gateway import StripeGatewayError
from billing_console.wording import counted


def _iso(value: str) -> datetime:
    try:
        return datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        raise CommandError(f"--since {value!r} is not an ISO date or time (e.g. 2026-05-01 or 2026-05-01T12:00Z).") from None


class Command(BaseCommand):
    help = ("Apply Stripe events the webhook endpoint missed: lists them from Stripe's Events API (those whose "
            "delivery failed, or all since --since / --days, at most 30 days back) and processes every one not "
            "processed yet, oldest first, exactly as a live webhook. Safe to run again.")

    def add_arguments(self, parser):
        window = parser.add_mutually_exclusive_group()
        window.add_argument("--since", metavar="ISO", help="Every event created since this UTC time (ISO 8601).")
        window.add_argument("--days", type=int, metavar="N", help="Every event of the last N days (at most 30).")

    def handle(self, *args, since=None, days=None, **options):
        try:
            start = catch_up_window(since=_iso(since) if since else None, days=days)
            report = stripe_events_catch_up(since=start)
        except (CatchUpError, StripeGatewayError) as exc:
            raise CommandError(str(exc)) from exc
        scope = f"since {start.isoformat()}" if start else "whose delivery failed"
        self.stdout.write(f"Events {scope}: listed {report.listed}, new {report.new}, "
                          f"already processed {report.already_processed}, processed now {report.processed}, "
                          f"ignored (no receiver) {report.ignored}, failed {report.failed}, skipped (being processed elsewhere) {report.skipped}.")
        for stripe_id in report.failed_ids:
            self.stdout.write(self.style.WARNING(f"  failed: {stripe_id} (see Webhook events in the admin; "
                                                 "fix the cause, then `python manage.py replay_events`)"))
        if report.failed:
            raise CommandError(f"{counted(report.failed, 'event')} failed.")
        self.stdout.write(self.style.SUCCESS("Caught up."))
