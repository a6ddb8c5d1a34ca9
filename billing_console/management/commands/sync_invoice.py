"""Re-read invoices from Stripe and apply them like invoice events (the admin's "Sync from Stripe")."""
from django.core.management.base import BaseCommand, CommandError

from billing_console.errors import ServiceError
from billing_console.invoicing.services import invoice_resync
from billing_console.models import AuditEvent


class Command(BaseCommand):
    help = ("Re-read invoices from Stripe and apply them as invoice events do: status, amounts, and delivery "
            "when an invoice is finalized and was never emailed. sync_invoice in_... [in_...]")

    def add_arguments(self, parser):
        parser.add_argument("invoice_ids", nargs="+", metavar="in_...", help="Stripe invoice ids.")

    def handle(self, *args, invoice_ids, **options):
        failed = 0
        for stripe_id in invoice_ids:
            try:
                invoice = invoice_resync(stripe_id=stripe_id, actor_type=AuditEvent.ActorType.SYSTEM, actor="sync_invoice")
            except ServiceError as exc:
                failed += 1
                self.stderr.write(f"{stripe_id}: {exc.message}")
                continue
            self.stdout.write(f"{invoice.stripe_id}: {invoice.status} {invoice.total} {invoice.currency}, "
                              f"delivery {invoice.get_delivery_status_display().lower()}"
                              f"{' (queued)' if invoice.next_delivery_at and not invoice.emailed_at else ''}")
        self.stdout.write(f"{len(invoice_ids) - failed} synced, {failed} failed")
        if failed:
            raise CommandError("Some invoices could not be synced.")
