"""Make django-q2's schedules match billing_console.ops.schedules.SCHEDULES, keyed by name."""
from __future__ import annotations

from django.db import transaction
from django_q.models import Schedule

from billing_console.ops.schedules import SCHEDULES, Cron

# Schedules whose task lives in one of these packages belong to the console and are pruned when unlisted;
# anything an operator added by hand for other code is left alone.
OWNED_PREFIXES = ("billing_console.", "licensing.", "deployments.", "dunning.")


def schedules_sync(schedules: list[Cron] | None = None) -> dict[str, list[str]]:
    schedules = SCHEDULES if schedules is None else schedules
    result = {"created": [], "updated": [], "unchanged": [], "removed": []}
    wanted = {s.name: s for s in schedules}
    with transaction.atomic():
        existing = {s.name: s for s in Schedule.objects.select_for_update().filter(name__in=wanted)}
        for name, cron in wanted.items():
            row = existing.get(name)
            fields = {"func": cron.func, "schedule_type": Schedule.CRON, "cron": cron.cron, "repeats": -1}
            if row is None:
                Schedule.objects.create(name=name, **fields)
                result["created"].append(name)
            elif any(getattr(row, k) != v for k, v in fields.items()):
                for k, v in fields.items():
                    setattr(row, k, v)
                row.next_run = None  # recomputed by django-q2 from the new expression
                row.save()
                result["updated"].append(name)
            else:
                result["unchanged"].append(name)
        stale = Schedule.objects.exclude(name__in=wanted).filter(
            func__regex=r"^(" + "|".join(p.replace(".", r"\.") for p in OWNED_PREFIXES) + ")")
        result["removed"] = sorted(stale.values_list("name", flat=True))
        stale.delete()
    return result
