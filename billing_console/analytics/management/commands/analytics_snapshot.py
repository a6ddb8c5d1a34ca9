"""Recompute the analytics page's monthly figures from the invoices (the daily schedule runs the same)."""
from django.core.management.base import BaseCommand, CommandError

from billing_console.analytics.snapshot import analytics_snapshot_build


class Command(BaseCommand):
    help = "Recompute the monthly analytics figures of the last N months (back-fill with a larger N)."

    def add_arguments(self, parser):
        parser.add_argument("--months", type=int, default=12, help="How many months, the current one last (1-120).")

    def handle(self, *args, months, **options):
        if not 1 <= months <= 120:
            raise CommandError("--months must be between 1 and 120.")
        result = analytics_snapshot_build(months=months)
        self.stdout.write(f"{result['months']} month(s) computed, {result['rows']} figure(s) stored.")
