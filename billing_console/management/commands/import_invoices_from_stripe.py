"""Backfill invoices and their PDFs from Stripe's invoice list (resumable; never a second copy; never emailed)."""
from django.core.management.base import BaseCommand, CommandError

from billing_console.errors import ServiceError
from billing_console.invoicing.history import import_since_parse, invoices_import
from billing_console.models import AuditEvent


class Command(BaseCommand):
    help = ("Backfill invoices and their PDFs from Stripe, newest first, page by page. Resumes where the last "
            "run stopped; invoices the console already holds are skipped; nothing is emailed.")

    def add_arguments(self, parser):
        parser.add_argument("--since", default="", help="Only invoices created on or after this day (YYYY-MM-DD).")
        parser.add_argument("--restart", action="store_true", help="Start again from the newest invoice.")
        parser.add_argument("--page-size", type=int, default=100, help="Invoices per Stripe page (1-100).")

    def handle(self, *args, since, restart, page_size, **options):
        if not 1 <= page_size <= 100:
            raise CommandError("--page-size must be between 1 and 100.")
        try:
            result = invoices_import(since=import_since_parse(since), restart=restart, page_size=page_size,
                                     actor_type=AuditEvent.ActorType.SYSTEM, actor="import_invoices_from_stripe")
        except ServiceError as exc:
            if exc.code == "invalid":
                raise CommandError(exc.message) from None
            raise CommandError(f"{exc.message} Run it again: it resumes after the last page done.") from None
        self.stdout.write(f"{result['imported']} imported, {result['existing']} already here, {result['pdfs']} PDFs "
                          f"stored, {result['pdf_failed']} PDFs failed, {result['skipped_draft']} drafts skipped, "
                          f"{result['unreadable']} unreadable; {result['pages']} pages"
                          + ("" if result["finished"] else f"; resumes after {result['cursor']}"))
        if result["pdf_failed"]:
            raise CommandError("Some PDFs could not be rendered (see the invoices' events); run it again to retry them.")
