import pytest
from django.core.management import CommandError, call_command

from billing_console.analytics.models import HourlyFigure, MonthlyFigure
from billing_console.ops.schedules import SCHEDULES
from tests.analytics.history import build_history


@pytest.mark.django_db
def test_backfill_command_stores_the_months_asked_and_the_hourly_window(capsys):
    build_history()
    call_command("analytics_snapshot", "--months", "24")
    assert MonthlyFigure.objects.filter(figure="computed").count() == 24
    assert MonthlyFigure.objects.filter(figure="mrr", dimension="usd", month="2026-04-01").get().value == 8000
    assert HourlyFigure.objects.filter(figure="computed").count() == 1
    assert "24 months computed" in capsys.readouterr().out


@pytest.mark.django_db
@pytest.mark.parametrize("months", ["0", "121", "-3"])
def test_backfill_command_refuses_a_bad_range(months):
    with pytest.raises(CommandError, match="between 1 and 120"):
        call_command("analytics_snapshot", "--months", months)
    assert not MonthlyFigure.objects.exists()


@pytest.mark.django_db
def test_both_snapshots_are_scheduled_and_record_a_cron_run():
    from billing_console.analytics.snapshot import analytics_hourly_cron, analytics_snapshot_cron
    from billing_console.models import CronRun

    names = {c.name: c.func for c in SCHEDULES}
    assert names["analytics_snapshot"] == "billing_console.analytics.snapshot.analytics_snapshot_cron"
    assert names["analytics_hourly"] == "billing_console.analytics.snapshot.analytics_hourly_cron"
    analytics_snapshot_cron()
    analytics_hourly_cron()
    assert set(CronRun.objects.filter(status="ok").values_list("name", flat=True)) == {"analytics_snapshot",
                                                                                         "analytics_hourly"}
