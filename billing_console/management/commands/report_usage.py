from django.core.management.base import BaseCommand, CommandError

from billing_console.wording import counted
from billing_console.invoicing.usage import usage_report_preview, usage_report_run
from billing_console.services import cron_guard


class Command(BaseCommand):
    help = ("Claim unreported usage events into windows (per customer, meter and window) and send their totals "
            "to Stripe's billing meters, each with its identifier, so nothing is counted twice.")

    def add_arguments(self, parser):
        parser.add_argument("--dry-run", action="store_true", help="Show what a run would claim and send; change nothing.")

    def handle(self, *args, dry_run=False, **options):
        if dry_run:
            preview = usage_report_preview()
            self.stdout.write(f"Dry run: {counted(preview['unreported_events'], 'unreported event')} would make "
                              f"{counted(preview['reports_to_claim'], 'report')}; {counted(preview['reports_due'], 'report')} due to send.")
            return
        with cron_guard("report_usage") as run:
            if run is None:
                raise CommandError("Another report_usage run is in progress; try again when it ends.")
            counts = usage_report_run()
            run.counts = {k: v for k, v in counts.items() if isinstance(v, int)}
        if "skipped" in counts:
            self.stdout.write(self.style.WARNING(f"Not sent: {counts['skipped']}."))
        self.stdout.write(", ".join(f"{k} {v}" for k, v in counts.items() if isinstance(v, int)) or "Nothing to report.")
        if counts.get("failed"):
            self.stdout.write(self.style.WARNING(f"{counted(counts['failed'], 'report')} failed: see Usage reports in the admin."))
