"""django-q2 entry points of the core: take ids, call one service."""
from billing_console.services import cron_guard
from billing_console.stripe import checkout
from billing_console.stripe import inbox as stripe_events


def webhook_event_process(webhook_event_id: int) -> str:
    return stripe_events.webhook_event_process(webhook_event_id=webhook_event_id)


def stripe_events_retry() -> None:
    with cron_guard("stripe_events_retry") as run:
        if run is not None:
            run.counts = stripe_events.webhook_events_retry_due()


def checkout_follow_up_send(attempt_id: str) -> str:
    return checkout.checkout_follow_up_send(attempt_id=attempt_id)


def customer_manage_link_send(customer_id: int, reason: str = "") -> str:
    return checkout.customer_manage_link_send(customer_id=customer_id, reason=reason)


def webhook_events_mirror() -> dict:
    from billing_console.stripe import mirror

    return mirror.webhook_events_mirror()


def stripe_events_mirror() -> None:
    from billing_console.stripe import mirror

    with cron_guard("stripe_events_mirror") as run:
        if run is not None:
            run.counts = mirror.webhook_events_mirror()


def customer_lifecycle_email_send(customer_id: int, template: str, extra: dict | None = None) -> str:
    from billing_console.stripe import lifecycle

    return lifecycle.customer_lifecycle_email_send(customer_id=customer_id, template=template, extra=extra)


def dispute_ops_alert_send(dispute_id: int) -> str:
    from billing_console.stripe import lifecycle

    return lifecycle.dispute_ops_alert_send(dispute_id=dispute_id)
