"""Create or update dj-stripe's webhook endpoint row from STRIPE_WEBHOOK_SECRET and SITE_URL (idempotent)."""
from django.core.management.base import BaseCommand, CommandError

from billing_console.errors import ServiceError
from billing_console.stripe.inbox import webhook_endpoint_setup


class Command(BaseCommand):
    help = "Record the console's Stripe webhook endpoint (SITE_URL/api/billing/webhook) with its signing secret."

    def handle(self, *args, **options):
        try:
            row, outcome = webhook_endpoint_setup()
        except ServiceError as exc:
            raise CommandError(exc.message) from None
        self.stdout.write(f"Webhook endpoint {outcome}: {row.url} (secret set, tolerance {row.djstripe_tolerance} s)")
        if outcome != "unchanged":
            self.stdout.write("In Stripe, the endpoint must point at this URL and use the same signing secret.")
