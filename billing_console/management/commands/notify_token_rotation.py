from django.core.management.base import BaseCommand, CommandError

from billing_console.ops.notices import customers_notify_token_rotation
from billing_console.vault import VaultError
from billing_console.wording import counted


class Command(BaseCommand):
    help = ("Master key leaked: email every customer with a deployment a fresh manage link asking them to revoke "
            "and rotate their Cloudflare API token. Run after rotate_master_key; each customer is emailed once per "
            "master key, so running it again only reaches those not reached yet.")

    def add_arguments(self, parser):
        parser.add_argument("--dry-run", action="store_true", help="Count who would be emailed; send nothing.")

    def handle(self, *args, dry_run, **options):
        try:
            counts = customers_notify_token_rotation(dry_run=dry_run)
        except VaultError as exc:
            raise CommandError(str(exc)) from exc
        if dry_run:
            self.stdout.write(f"{counted(counts['customers'], 'customer')} with a deployment: {counts['would_send']} would be "
                              f"emailed, {counts['skipped']} already were for this master key. Nothing sent.")
            return
        self.stdout.write(f"{counted(counts['customers'], 'customer')} with a deployment: sent {counts['sent']}, "
                          f"already emailed {counts['skipped']}, failed {counts['failed']}.")
        if counts["failed"]:
            raise CommandError(f"{counted(counts['failed'], 'email')} failed; run the command again to retry them.")
        self.stdout.write(self.style.SUCCESS("Done."))
