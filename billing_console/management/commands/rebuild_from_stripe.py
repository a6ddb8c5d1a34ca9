from django.core.management.base import BaseCommand, CommandError

from billing_console.ops.rebuild import stripe_rebuild
from billing_console.stripe.gateway import StripeGatewayError
from billing_console.wording import counted


class Command(BaseCommand):
    help = ("After the database is lost: rebuild customers, subscription state, licences (new keys, flagged for "
            "reissue) and deployment shells (no token; the customer is emailed a manage link to enter one) from "
            "Stripe's subscriptions and the metadata the console keeps on them. Run `migrate` first. Safe to run "
            "again: what exists is kept.")

    def add_arguments(self, parser):
        parser.add_argument("--dry-run", action="store_true", help="Print what would be created; write and send nothing.")

    def handle(self, *args, dry_run, **options):
        try:
            report = stripe_rebuild(dry_run=dry_run)
        except StripeGatewayError as exc:
            raise CommandError(f"Stripe: {exc} Nothing more was done; run the command again once Stripe answers.") from exc
        verb = "would create" if dry_run else "created"
        people = []
        for line in report.customers:
            made = ", ".join(line.created) or "nothing"
            self.stdout.write(f"{line.email} ({line.subscription_id}): {verb} {made}"
                              + (f"; recovery email {line.notice}" if line.notice else ""))
            people += [f"{line.email}: {need}" for need in line.needs_person]
        people += report.errors
        counts = report.counts()
        self.stdout.write(f"{counted(counts['subscriptions'], 'subscription')} listed, {counts['ended_skipped']} ended (not rebuilt), "
                          f"{counted(counts['customers'], 'customer')}, {counted(counts['created'], 'thing')} {verb}, "
                          f"{counted(counts['notices_sent'], 'recovery email')} sent.")
        if people:
            self.stdout.write(self.style.WARNING(f"Needs a person ({len(people)}):"))
            for item in people:
                self.stdout.write(f"  - {item}")
        if dry_run:
            self.stdout.write("Dry run: nothing was written or sent.")
        if report.errors:
            raise CommandError(f"{counted(len(report.errors), 'subscription')} could not be rebuilt (listed above).")
