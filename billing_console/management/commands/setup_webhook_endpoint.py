"""Create or update the console's webhook endpoint in Stripe (SITE_URL/api/billing/webhook); idempotent."""
from django.core.management.base import BaseCommand, CommandError

from billing_console.stripe.endpoint import webhook_endpoint_sync
from billing_console.stripe.gateway import StripeGatewayError


class Command(BaseCommand):
    help = ("Register the console's webhook endpoint with Stripe: SITE_URL/api/billing/webhook, exactly the event "
            "types the console handles plus those dj-stripe's mirror takes (STRIPE_DJSTRIPE_SYNC), the pinned API "
            "version. Prints the signing secret when it creates one.")

    def handle(self, *args, **options):
        try:
            result = webhook_endpoint_sync()
        except StripeGatewayError as exc:
            raise CommandError(exc.message) from None
        endpoint = result.endpoint
        events = endpoint.get("enabled_events") or []
        self.stdout.write(f"Webhook endpoint {result.outcome}: {endpoint.get('id')} {endpoint.get('url')} "
                          f"({len(events)} event types, API version {endpoint.get('api_version') or '-'})")
        if result.changed and result.outcome == "updated":
            self.stdout.write(f"  changed: {', '.join(result.changed)}")
        if result.secret:
            # Shown once, here only: Stripe never returns it again and the console does not store it.
            self.stdout.write("")
            self.stdout.write(f"  Signing secret: {result.secret}")
            self.stdout.write("  Put it in STRIPE_WEBHOOK_SECRET (the environment or .env of every web node) and "
                              "restart the web processes; until then every delivery is refused (400).")
        for warning in result.warnings:
            self.stdout.write(self.style.WARNING(f"  {warning}"))
