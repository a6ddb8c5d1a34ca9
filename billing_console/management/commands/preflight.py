from django.conf import settings
from django.core.management.base import BaseCommand

from billing_console.models import AuditEvent
from billing_console.ops.checks import preflight_problems
from billing_console.wording import counted
from billing_console.stripe.switch import checkout_close_on_no_go


class Command(BaseCommand):
    help = "List every blocker for running the console (presence and shape only) and end with GO or NO_GO."

    def add_arguments(self, parser):
        parser.add_argument("--mode", choices=["test", "live"], default=None,
                            help="Check for test or live mode (default: from STRIPE_LIVE_MODE).")

    def handle(self, *args, mode=None, **options):
        mode = mode or ("live" if settings.STRIPE_LIVE_MODE else "test")
        warnings: list[tuple[str, str]] = []
        problems = preflight_problems(mode, warnings=warnings)
        self.stdout.write(f"Preflight for {mode} mode")
        for pid, message in problems:
            self.stdout.write(f"  [{pid}] {message}")
        for pid, message in warnings:  # shown, never a NO_GO
            self.stdout.write(self.style.WARNING(f"  [{pid}] warning: {message}"))
        if problems and mode == "live":
            # In live mode a NO_GO closes sales by itself (reopening stays a person's decision).
            closed = checkout_close_on_no_go(problems=problems, actor_type=AuditEvent.ActorType.SYSTEM, actor="preflight")
            if closed is not None:
                self.stdout.write(self.style.WARNING(f"Checkout closed: {closed.reason}"))
        if problems:
            self.stdout.write(self.style.ERROR(f"NO_GO ({counted(len(problems), 'blocker')})"))
            raise SystemExit(1)
        self.stdout.write(self.style.SUCCESS("GO"))
