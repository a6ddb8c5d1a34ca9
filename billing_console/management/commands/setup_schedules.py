from django.core.management.base import BaseCommand

from billing_console.ops.scheduling import schedules_sync


class Command(BaseCommand):
    help = "Create or update every cron listed in billing_console/ops/schedules.py; remove ones no longer listed."

    def handle(self, *args, **options):
        result = schedules_sync()
        for name in result["created"]:
            self.stdout.write(f"created  {name}")
        for name in result["updated"]:
            self.stdout.write(f"updated  {name}")
        for name in result["removed"]:
            self.stdout.write(f"removed  {name}")
        self.stdout.write(self.style.SUCCESS(
            f"{len(result['created'])} created, {len(result['updated'])} updated, "
            f"{len(result['unchanged'])} unchanged, {len(result['removed'])} removed"))
