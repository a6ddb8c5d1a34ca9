from django.core.management.base import BaseCommand, CommandError

from billing_console.ops.backups import BackupError, backup_export
from billing_console.wording import counted


class Command(BaseCommand):
    help = ("Write every row of the console's own tables (customers, licences, deployments with their "
            "ciphertexts, dunning, invoices, reconciliation, audit, ...) to one gzip backup file with a "
            "checksum. Without --out it goes to the storage under backups/ and old ones beyond "
            "BACKUP_RETENTION are deleted.")

    def add_arguments(self, parser):
        parser.add_argument("--out", metavar="PATH", help="File or existing folder to write to instead of the storage.")

    def handle(self, *args, out=None, **options):
        try:
            result = backup_export(out_path=out)
        except BackupError as exc:
            raise CommandError(str(exc)) from exc
        for label, count in result.counts.items():
            self.stdout.write(f"  {label}: {count}")
        for name in result.pruned:
            self.stdout.write(f"  pruned old backup {name}")
        self.stdout.write(self.style.SUCCESS(
            f"Backup of {counted(sum(result.counts.values()), 'row')} written to {result.location} "
            f"({result.size} bytes, sha256 {result.sha256[:12]}...)."))
