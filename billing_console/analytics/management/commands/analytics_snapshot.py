"""Recompute the analytics page's figures: the monthly ones from the invoices, and the hourly operations ones
of the last 7 days (the daily and hourly schedules run the same)."""
from django.core.management.base import BaseCommand, CommandError

from billing_console.analytics.snapshot import analytics_hourly_build, analytics_snapshot_build
from billing_console.wording import counted


class Command(BaseCommand):
    help = "Recompute the monthly analytics figures of the last N months (back-fill with a larger N)."

    def add_arguments(self, parser):
        parser.add_argument("--months", type=int, default=12, help="How many months, the current one last (1-120).")

    def handle(self, *args, months, **options):
        if not 1 <= months <= 120:
            raise CommandError("--months must be between 1 and 120.")
        result = analytics_snapshot_build(months=months)
        hourly = analytics_hourly_build()
        self.stdout.write(f"{counted(result['months'], 'month')} computed, {counted(result['rows'], 'figure')} stored; "
                          f"{counted(hourly['hours'], 'hour')} of operations, {counted(hourly['rows'], 'figure')}.")
