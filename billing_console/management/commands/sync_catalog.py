"""`manage.py sync_catalog`: mirror Stripe's products and prices into dj-stripe's tables, so the pricing
page shows amounts on a fresh install (webhooks only bring later changes)."""
from django.core.management.base import BaseCommand, CommandError

from billing_console.wording import counted
from billing_console.stripe.gateway import StripeGatewayError
from billing_console.stripe.mirror import catalog_sync


class Command(BaseCommand):
    help = "Mirror Stripe's products and prices into dj-stripe's tables (what the pricing page reads)."

    def handle(self, *args, **options):
        try:
            counts = catalog_sync()
        except StripeGatewayError as exc:
            raise CommandError(f"Stripe did not answer: {exc.message}") from exc
        self.stdout.write(f"Mirrored {counted(counts['products'], 'product')} and {counted(counts['prices'], 'price')} from Stripe"
                          + (f"; {counts['failed']} could not be mirrored (see the log)." if counts["failed"] else "."))
        if counts["failed"]:
            raise CommandError(f"{counted(counts['failed'], 'object')} not mirrored.")
