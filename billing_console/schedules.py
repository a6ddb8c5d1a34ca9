"""Every cron of the console, in one list (UTC). `manage.py setup_schedules` makes django-q2 match it.

Each entry: name (unique), the task's dotted path, and a cron expression. Tasks record a CronRun
through `billing_console.services.cron_guard`, so two starts never overlap.
"""
from typing import NamedTuple


class Cron(NamedTuple):
    name: str
    func: str
    cron: str
    doc: str


SCHEDULES: list[Cron] = [
    # Each app adds its crons here (see the issues); keep names stable, setup_schedules keys on them.
    Cron("push_deployments", "deployments.tasks.push_deployments", "0 * * * *",
         "Push the wanted bundle release to every entitled, unpaused deployment that is behind."),
    Cron("backup_export", "billing_console.backups.backup_export_cron", "30 3 * * *",
         "daily backup of the console's tables to storage; keeps BACKUP_RETENTION files"),
]
