"""django-q2 entry points of the core: take ids, call one service."""
from billing_console.services import cron_guard
from billing_console.stripe import checkout
from billing_console.stripe import inbox as stripe_events


def webhook_event_process(webhook_event_id: int) -> str:
    return stripe_events.webhook_event_process(webhook_event_id=webhook_event_id)


def webhook_events_drain() -> dict:
    return stripe_events.webhook_events_drain()


def stripe_events_retry() -> None:
    with cron_guard("stripe_events_retry") as run:
        if run is not None:
            run.counts = stripe_events.webhook_events_retry_due()


def stripe_events_prune() -> None:
    from django.conf import settings

    with cron_guard("stripe_events_prune") as run:
        if run is not None:
            days = settings.STRIPE_EVENT_RETENTION_DAYS
            run.counts = {"deleted": stripe_events.webhook_events_prune(older_than_days=days) if days else 0}


def checkout_follow_up_send(attempt_id: str) -> str:
    return checkout.checkout_follow_up_send(attempt_id=attempt_id)


def customer_email_changed_notice_send(customer_id: int, old_email: str) -> str:
    return checkout.customer_email_changed_notice_send(customer_id=customer_id, old_email=old_email)


def customer_manage_link_send(customer_id: int, reason: str = "") -> str:
    return checkout.customer_manage_link_send(customer_id=customer_id, reason=reason)
