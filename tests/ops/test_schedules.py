from datetime import timedelta

import pytest
from django.core.management import call_command
from django.utils import timezone
from django_q.models import Schedule

from billing_console.models import CronRun
from billing_console.ops import scheduling
from billing_console.ops.schedules import SCHEDULES, Cron
from billing_console.services import cron_guard, cron_start

LISTED = [
    Cron("push_deployments", "deployments.tasks.push_deployments", "0 * * * *", "hourly"),
    Cron("reconcile", "billing_console.stripe.tasks.reconcile", "0 6 * * *", "daily"),
]


def test_setup_is_idempotent_and_updates_by_name(db):
    first = scheduling.schedules_sync(LISTED)
    assert sorted(first["created"]) == ["push_deployments", "reconcile"]
    again = scheduling.schedules_sync(LISTED)
    assert again["created"] == [] and sorted(again["unchanged"]) == ["push_deployments", "reconcile"]
    assert Schedule.objects.count() == 2

    changed = [LISTED[0]._replace(cron="30 * * * *"), LISTED[1]]
    result = scheduling.schedules_sync(changed)
    assert result["updated"] == ["push_deployments"]
    assert Schedule.objects.get(name="push_deployments").cron == "30 * * * *"


def test_setup_removes_unlisted_console_schedules_but_not_foreign_ones(db):
    scheduling.schedules_sync(LISTED)
    Schedule.objects.create(name="someone_elses", func="other_project.tasks.job", schedule_type=Schedule.DAILY)
    result = scheduling.schedules_sync(LISTED[:1])
    assert result["removed"] == ["reconcile"]
    assert set(Schedule.objects.values_list("name", flat=True)) == {"push_deployments", "someone_elses"}


def test_every_listed_task_is_importable_and_uses_a_valid_cron_expression():
    from croniter import croniter
    from django.utils.module_loading import import_string

    names = [s.name for s in SCHEDULES]
    assert len(names) == len(set(names))
    for cron in SCHEDULES:
        assert callable(import_string(cron.func)), cron.func
        assert croniter.is_valid(cron.cron), cron.cron


def test_setup_schedules_command_prints_counts(db, capsys):
    call_command("setup_schedules")
    assert "created" in capsys.readouterr().out


def test_second_start_while_running_records_a_skip(db):
    with cron_guard("push_deployments") as run:
        assert run is not None
        with cron_guard("push_deployments") as overlapping:
            assert overlapping is None
        run.counts = {"pushed": 3}
    statuses = list(CronRun.objects.filter(name="push_deployments").order_by("started_at", "pk").values_list("status", flat=True))
    assert sorted(statuses) == ["ok", "skipped"]
    assert CronRun.objects.get(status="ok").counts == {"pushed": 3}


def test_failure_inside_a_cron_is_recorded_as_errors_and_releases_it(db):
    with pytest.raises(RuntimeError):
        with cron_guard("reconcile"):
            raise RuntimeError("stripe unreachable")
    run = CronRun.objects.get(name="reconcile")
    assert run.status == CronRun.Status.ERRORS and "stripe unreachable" in run.error_summary
    assert cron_start("reconcile") is not None  # the next start is not blocked


def test_counted_errors_mark_the_run_as_errors(db):
    with cron_guard("push_deployments") as run:
        run.counts = {"pushed": 2, "failed": 1}
    assert CronRun.objects.get().status == CronRun.Status.ERRORS


def test_a_crashed_run_does_not_block_forever(db, settings):
    settings.CRON_STALE_AFTER_MINUTES = 60
    crashed = CronRun.objects.create(name="push_deployments")
    CronRun.objects.filter(pk=crashed.pk).update(started_at=timezone.now() - timedelta(hours=2))
    assert cron_start("push_deployments") is not None
    crashed.refresh_from_db()
    assert crashed.status == CronRun.Status.ABANDONED
