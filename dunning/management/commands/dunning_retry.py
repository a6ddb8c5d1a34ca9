"""Retry a failed (or skipped) dunning step now (runbook: "Manual Retry")."""
from django.core.management.base import BaseCommand, CommandError

from billing_console.models import AuditEvent
from dunning.management.commands.dunning_send import describe
from dunning.models import DunningStepLog
from dunning.sending import dunning_step_retry
from dunning.services import DunningError


class Command(BaseCommand):
    help = "Retry a failed dunning step now: --log ID (the step log's id)"

    def add_arguments(self, parser):
        parser.add_argument("--log", required=True, help="DunningStepLog id")

    def handle(self, *args, log, **options):
        try:
            step_log = DunningStepLog.objects.get(pk=int(log))
        except (ValueError, DunningStepLog.DoesNotExist):
            raise CommandError(f"No dunning step log with id {log!r}.")
        try:
            row = dunning_step_retry(step_log=step_log, actor_type=AuditEvent.ActorType.SYSTEM,
                                     actor="manage.py dunning_retry")
        except DunningError as exc:
            raise CommandError(str(exc))
        self.stdout.write(describe(row, row.case))
        if row.status in ("failed", "skipped"):
            raise CommandError(f"{row.step_code} was not sent: {row.status} ({row.reason}) {row.detail}")
