from pathlib import Path

from django.core.management.base import BaseCommand, CommandError

from billing_console.invoicing.ledger import LEDGER_MAX_BYTES, LedgerImportError, ledger_import
from billing_console.models import AuditEvent
from billing_console.wording import counted


class Command(BaseCommand):
    help = "Import legacy ledger totals from a CSV (account,period,total,currency); all rows or none."

    def add_arguments(self, parser):
        parser.add_argument("file", help="CSV file: account,period (YYYY-MM),total (minor units),currency")

    def handle(self, *args, file, **options):
        path = Path(file)
        if not path.is_file():
            raise CommandError(f"No such file: {file}")
        if path.stat().st_size > LEDGER_MAX_BYTES:
            raise CommandError(f"{file} is larger than {LEDGER_MAX_BYTES // (1024 * 1024)} MB.")
        try:
            result = ledger_import(content=path.read_bytes(), source=path.name,
                                   actor_type=AuditEvent.ActorType.SYSTEM, actor="import_ledger")
        except LedgerImportError as exc:
            for error in exc.errors:
                self.stderr.write(error)
            raise CommandError(f"{counted(len(exc.errors), 'problem')} in {file}; nothing was imported.") from None
        self.stdout.write(self.style.SUCCESS(
            f"Imported {counted(result['rows'], 'row')} from {path.name}: {result['created']} created, "
            f"{result['updated']} updated, {result['unchanged']} unchanged."))
