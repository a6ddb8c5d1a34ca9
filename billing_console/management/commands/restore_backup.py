from django.core.management.base import BaseCommand, CommandError

from billing_console.ops.backups import BackupError, backup_restore
from billing_console.wording import counted


class Command(BaseCommand):
    help = ("Restore a backup made by export_backup into an empty, migrated database (primary keys kept, "
            "sequences reset). Checks the format version and checksum first. Refuses a database that "
            "already holds console data unless --force, which deletes it in the same transaction.")

    def add_arguments(self, parser):
        parser.add_argument("path", help="Backup file path, or its name in the storage (backups/...).")
        parser.add_argument("--force", action="store_true",
                            help="Delete every console row before restoring (same transaction).")

    def handle(self, *args, path, force, **options):
        try:
            result = backup_restore(source=path, force=force)
        except BackupError as exc:
            raise CommandError(str(exc)) from exc
        if result.wiped:
            self.stdout.write(f"Deleted {counted(sum(result.wiped.values()), 'existing row')} first (--force).")
        for label, count in result.counts.items():
            self.stdout.write(f"  {label}: {count}")
        for note in result.notes:
            self.stdout.write(self.style.WARNING(f"Note: {note}"))
        self.stdout.write(self.style.SUCCESS(f"Restored {counted(sum(result.counts.values()), 'row')} from {path}."))
