"""Send one dunning step of a subscription's open case now (runbook: "Manually send dunning message"), or,
without arguments, run the due pass the cron runs every ten minutes (on the sandbox clock in sandbox mode)."""
from django.core.management.base import BaseCommand, CommandError

from billing_console.models import AuditEvent
from dunning.sending import dunning_run, dunning_step_send_now
from dunning.services import DunningError, dunning_case_for_subscription


class Command(BaseCommand):
    help = ("Send a dunning step now: --subscription sub_... --step SOFT_D+3; without them, send every step "
            "that has fallen due (the cron's pass).")

    def add_arguments(self, parser):
        parser.add_argument("--subscription", help="Stripe subscription id (sub_...)")
        parser.add_argument("--step", help="Step code of the case's policy, e.g. SOFT_D+3")

    def handle(self, *args, subscription, step, **options):
        if not subscription and not step:
            counts = dunning_run()
            self.stdout.write(", ".join(f"{k}: {v}" for k, v in counts.items()))
            return
        if not subscription or not step:
            raise CommandError("Give both --subscription and --step, or neither (send what has fallen due).")
        try:
            case = dunning_case_for_subscription(subscription.strip())
            row = dunning_step_send_now(case=case, step_code=step, actor_type=AuditEvent.ActorType.SYSTEM,
                                        actor="manage.py dunning_send")
        except DunningError as exc:
            raise CommandError(str(exc))
        self.stdout.write(describe(row, case))
        if row.status in ("failed", "skipped"):
            raise CommandError(f"{row.step_code} was not sent: {row.status} ({row.reason}) {row.detail}")


def describe(row, case) -> str:
    to = case.customer.phone if row.channel == "whatsapp" else case.customer.email
    text = f"{row.step_code} via {row.channel} to {to} for invoice {case.invoice_id}: {row.status} (log #{row.pk}"
    text += f", attempt {row.attempts})" if row.attempts else ")"
    if row.status == "queued" and row.next_retry_at:
        text += f"; next try at {row.next_retry_at:%Y-%m-%d %H:%M} UTC ({row.reason}: {row.detail})"
    if row.provider_message_id:
        text += f"; message id {row.provider_message_id}"
    return text
