from django.core.management.base import BaseCommand, CommandError

from billing_console.services import vault_rotate
from billing_console.vault import Keyring, VaultError


class Command(BaseCommand):
    help = ("Re-encrypt every vault value under CLOUD_MASTER_KEY. Put the old key in CLOUD_MASTER_KEY_PREVIOUS "
            "first. Safe to interrupt and run again; prints progress, never a value.")

    def add_arguments(self, parser):
        parser.add_argument("--batch-size", type=int, default=200)

    def handle(self, *args, batch_size, **options):
        if batch_size < 1:
            raise CommandError("--batch-size must be at least 1.")
        try:
            keyring = Keyring.from_settings()
            self.stdout.write(f"Current key id {keyring.current.kid}; keyring holds {len(keyring.keys)} key(s).")
            totals = vault_rotate(batch_size=batch_size, progress=self.stdout.write)
        except VaultError as exc:
            raise CommandError(str(exc)) from exc
        for label, count in totals.items():
            self.stdout.write(f"  {label}: {count}")
        self.stdout.write(self.style.SUCCESS(f"Re-encrypted {sum(totals.values())} value(s)."))
