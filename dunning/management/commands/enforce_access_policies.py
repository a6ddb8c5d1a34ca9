"""Apply the dunning policies' locks now (the hourly task does the same): soft lock past grace_days,
hard lock past hard_lock_days, lift locks that no unpaid case explains."""
from django.core.management.base import BaseCommand

from billing_console.models import AuditEvent
from dunning.services import dunning_enforce_access_policies


class Command(BaseCommand):
    help = "Soft/hard lock customers past their dunning policy's days; unlock customers with nothing unpaid."

    def handle(self, *args, **options):
        counts = dunning_enforce_access_policies(actor_type=AuditEvent.ActorType.SYSTEM, actor="manage.py enforce_access_policies")
        self.stdout.write(", ".join(f"{k}: {v}" for k, v in counts.items()))
