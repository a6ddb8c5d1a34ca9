"""`manage.py push_deployments [--deployment ID ...] [--dry-run]`: the hourly push, by hand."""
from django.core.management.base import BaseCommand, CommandError

from billing_console.errors import ServiceError
from billing_console.models import CronRun
from deployments import tasks
from deployments.push import deployments_push
from deployments.selectors import PUSH_CRON
from deployments.services import deployment_ids
from billing_console.wording import counted


class Command(BaseCommand):
    help = "Push the wanted release to every due deployment (or only the ones given)."

    def add_arguments(self, parser):
        parser.add_argument("--deployment", action="append", default=[], metavar="ID",
                            help="Only this deployment (repeatable).")
        parser.add_argument("--dry-run", action="store_true", help="Say what would be pushed; change nothing.")

    def handle(self, *args, deployment, dry_run, **options):
        try:
            ids = deployment_ids(deployment) or None
        except ServiceError as exc:
            raise CommandError(exc.message) from None
        if dry_run:
            report = deployments_push(deployment_ids=ids, dry_run=True)
            for pk, current, version in report.would_push:
                self.stdout.write(f"would push {pk}: {current or '(none)'} -> {version}")
            self._problems(report.problems)
            self.stdout.write(f"{counted(len(report.would_push), 'deployment')} would be pushed (dry run).")
            return
        if ids is None:
            counts = tasks.push_deployments()
            if counts is None:
                raise CommandError("Another push_deployments run is still running; nothing done.")
            run = CronRun.objects.filter(name=PUSH_CRON).order_by("-started_at").first()
            problems = [line for line in (run.error_summary if run else "").splitlines() if line]
        else:
            report = deployments_push(deployment_ids=ids)
            counts, problems = dict(report.counts), report.problems
        self._problems(problems)
        shown = ", ".join(f"{k}={v}" for k, v in sorted(counts.items()) if v)
        self.stdout.write(f"pushed {counts.get('pushed', 0)}, failed {counts.get('failed', 0)} ({shown})")

    def _problems(self, problems):
        for problem in problems:
            self.stderr.write(problem)
