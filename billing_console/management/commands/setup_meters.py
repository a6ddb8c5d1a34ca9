from django.conf import settings
from django.core.management.base import BaseCommand, CommandError

from billing_console.wording import counted
from billing_console.invoicing.usage_meters import usage_meters_setup
from billing_console.stripe import gateway as stripe_gateway


class Command(BaseCommand):
    help = "Create the billing meters of USAGE_METERS that Stripe lacks and check the ones it has."

    def add_arguments(self, parser):
        parser.add_argument("--check", action="store_true", help="Only check; create nothing (exit 1 on a problem).")

    def handle(self, *args, check=False, **options):
        if not settings.USAGE_METERS:
            self.stdout.write("No meters configured (USAGE_METERS is empty): usage billing is off.")
            return
        if not stripe_gateway.configured():
            raise CommandError("Stripe is not configured (STRIPE_SECRET_KEY): meters cannot be set up.")
        try:
            results = usage_meters_setup(dry_run=check)
        except stripe_gateway.StripeGatewayError as exc:
            raise CommandError(f"Could not set up meters: {exc.message}") from None
        bad = 0
        for r in results:
            line = f"{r['key']}: {r['status']} (event {r['event_name']}{', ' + r['meter_id'] if r['meter_id'] else ''})"
            if r["problem"]:
                line += f": {r['problem']}"
            if r["status"] in ("mismatch", "missing"):
                bad += 1
                self.stdout.write(self.style.WARNING(line))
            else:
                self.stdout.write(self.style.SUCCESS(line))
        if bad:
            raise CommandError(f"{counted(bad, 'meter')} need attention.")
