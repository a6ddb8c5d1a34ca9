"""Delete applied Stripe events older than a number of days (the nightly stripe_events_prune cron does
the same with STRIPE_EVENT_RETENTION_DAYS)."""
from django.conf import settings
from django.core.management.base import BaseCommand, CommandError

from billing_console.wording import counted
from billing_console.errors import ServiceError
from billing_console.stripe.inbox import webhook_events_prune


class Command(BaseCommand):
    help = "Delete applied Stripe events older than --older-than DAYS (default STRIPE_EVENT_RETENTION_DAYS)."

    def add_arguments(self, parser):
        parser.add_argument("--older-than", type=int, dest="days", default=None, metavar="DAYS",
                            help="Age in days by Stripe's time; unapplied and failed events are always kept.")
        parser.add_argument("--batch-size", type=int, default=5000)

    def handle(self, *args, days, batch_size, **options):
        days = settings.STRIPE_EVENT_RETENTION_DAYS if days is None else days
        if not days:
            raise CommandError("Retention is off (STRIPE_EVENT_RETENTION_DAYS=0): pass --older-than DAYS.")
        if batch_size < 1:
            raise CommandError("--batch-size must be at least 1.")
        try:
            deleted = webhook_events_prune(older_than_days=days, batch_size=batch_size)
        except ServiceError as exc:
            raise CommandError(exc.message) from None
        self.stdout.write(f"{counted(deleted, 'applied event')} older than {counted(days, 'day')} deleted.")
