"""django-q2 entry points: take ids, call a service, record the cron run."""
from billing_console.services import cron_guard
from dunning import sending, services


def dunning_send() -> None:
    with cron_guard("dunning_send") as run:
        if run is not None:
            run.counts = sending.dunning_run()


def enforce_access_policies() -> None:
    with cron_guard("enforce_access_policies") as run:
        if run is not None:
            run.counts = services.dunning_enforce_access_policies()


def send_steps(log_ids: list[int]) -> dict:
    """Send steps queued by a webhook right away (the cron would pick them up at its next run anyway)."""
    return sending.dunning_steps_send(ids=[int(i) for i in log_ids])
