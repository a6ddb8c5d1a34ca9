from django.core.management.base import BaseCommand, CommandError

from billing_console.services import vault_rotate
from billing_console.vault import Keyring, VaultError
from billing_console.wording import counted


class Command(BaseCommand):
    help = ("Re-encrypt every vault value under CLOUD_MASTER_KEY. Put the old key in CLOUD_MASTER_KEY_PREVIOUS "
            "first. Safe to interrupt and run again; prints progress, never a value. Values no key can read are "
            "left as they are and listed (model, id, field); the command then exits non-zero.")

    def add_arguments(self, parser):
        parser.add_argument("--batch-size", type=int, default=200)

    def handle(self, *args, batch_size, **options):
        if batch_size < 1:
            raise CommandError("--batch-size must be at least 1.")
        try:
            keyring = Keyring.from_settings()
            self.stdout.write(f"Current key id {keyring.current.kid}; keyring holds {counted(len(keyring.keys), 'key')}.")
            result = vault_rotate(batch_size=batch_size, progress=self.stdout.write)
        except VaultError as exc:
            raise CommandError(str(exc)) from exc
        for label, count in result.totals.items():
            self.stdout.write(f"  {label}: {count}")
        self.stdout.write(self.style.SUCCESS(f"Re-encrypted {counted(sum(result.totals.values()), 'value')}."))
        if result.unreadable:
            lines = [f"  {model} {pk} {column}" for model, pk, column in result.unreadable]
            self.stdout.write("Unreadable (model, id, field):\n" + "\n".join(lines))
            raise CommandError(f"{counted(len(result.unreadable), 'value')} could not be read with any key in the keyring and "
                               "were left as they are; clear or re-collect them, then run again:\n" + "\n".join(lines))
