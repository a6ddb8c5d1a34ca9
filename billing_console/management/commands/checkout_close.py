"""Pause sales (the checkout switch), and with --expire-open expire every Checkout session still open at
Stripe: the first step of a rollback."""
from django.core.management.base import BaseCommand, CommandError

from billing_console.errors import ServiceError
from billing_console.models import AuditEvent
from billing_console.stripe.switch import checkout_close, checkout_sessions_expire_open


class Command(BaseCommand):
    help = ("Close checkout (the pricing page says sales are paused, the API answers 503); "
            "--expire-open also expires open sessions.")

    def add_arguments(self, parser):
        parser.add_argument("--reason", default="closed from the command line",
                            help="Kept with the switch and the audit row.")
        parser.add_argument("--expire-open", action="store_true",
                            help="Also expire every Checkout session still open at Stripe (links already handed out).")

    def handle(self, *args, reason, expire_open, **options):
        actor = {"actor_type": AuditEvent.ActorType.SYSTEM, "actor": "checkout_close"}
        try:
            switch = checkout_close(reason=reason, **actor)
        except ServiceError as exc:
            raise CommandError(exc.message) from None
        self.stdout.write(f"Checkout closed ({switch.reason}).")
        if not expire_open:
            return
        try:
            result = checkout_sessions_expire_open(**actor)
        except ServiceError as exc:
            raise CommandError(f"Open sessions could not be listed: {exc.message}") from None
        for error in result["errors"]:
            self.stderr.write(error)
        self.stdout.write(f"{result['expired']} of {result['open']} open Checkout sessions expired, "
                          f"{result['failed']} failed.")
        if result["failed"]:
            raise CommandError("Some sessions could not be expired; run it again.")
