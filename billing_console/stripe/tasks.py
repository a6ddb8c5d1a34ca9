"""django-q2 entry points of the core: take ids, call one service."""
from billing_console import manage_links
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


def customer_manage_link_send(customer_id: int, reason: str = "") -> int:
    """/recover queues this (so a known and an unknown address answer alike): records a tracked delivery."""
    from billing_console.models import AuditEvent, Customer

    customer = Customer.objects.get(pk=customer_id)
    delivery = manage_links.manage_link_delivery_request(customer=customer, reason=reason or "recover", enqueue=False,
                                                         actor_type=AuditEvent.ActorType.CUSTOMER, actor=customer.email)
    manage_links.manage_link_deliver(delivery_id=delivery.pk)  # already in a worker: send now
    return delivery.pk


def manage_link_deliver(delivery_id: int) -> str:
    delivery = manage_links.manage_link_deliver(delivery_id=delivery_id)
    return delivery.status if delivery is not None else "skipped"


def manage_link_delivery_retry() -> None:
    with cron_guard("manage_link_delivery_retry") as run:
        if run is not None:
            run.counts = manage_links.manage_link_deliver_due()


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
