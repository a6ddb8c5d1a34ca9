"""Reopen sales (the checkout switch). Refused while CHECKOUT_ENABLED is false, and in live mode while
preflight is NO_GO."""
from django.core.management.base import BaseCommand, CommandError

from billing_console.errors import ServiceError
from billing_console.models import AuditEvent
from billing_console.stripe.switch import checkout_open


class Command(BaseCommand):
    help = "Open checkout again (refused in live mode while preflight is NO_GO)."

    def handle(self, *args, **options):
        try:
            checkout_open(actor_type=AuditEvent.ActorType.SYSTEM, actor="checkout_open", reason="opened from the command line")
        except ServiceError as exc:
            raise CommandError(exc.message) from None
        self.stdout.write("Checkout open.")
