"""Stripe events that concern dunning. Each maps the event to one service; all are idempotent per event
and per object (a case is keyed by invoice id; closing a closed case is a no-op; timestamps decide)."""
from django.utils import timezone

from billing_console.stripe.dispatch import Stage, receiver
from billing_console.stripe.objects import event_created, event_object, to_datetime
from dunning import services


def _at(event: dict):
    return event_created(event) or timezone.now()


@receiver("invoice.payment_failed", stage=Stage.DUNNING)
def invoice_payment_failed(event: dict) -> None:
    services.dunning_case_open(invoice=event_object(event), failed_at=_at(event), actor=event.get("id", ""))


@receiver("invoice.paid", stage=Stage.DUNNING)
def invoice_paid(event: dict) -> None:
    invoice = event_object(event)
    paid_at = to_datetime((invoice.get("status_transitions") or {}).get("paid_at")) or _at(event)
    services.dunning_invoice_paid(invoice_id=invoice.get("id", ""), paid_at=paid_at, actor=event.get("id", ""))


@receiver("customer.subscription.updated", "customer.subscription.deleted", stage=Stage.DUNNING)
def subscription_changed(event: dict) -> None:
    subscription = event_object(event)
    services.dunning_subscription_changed(subscription_id=subscription.get("id", ""),
                                          status=subscription.get("status", ""), changed_at=_at(event),
                                          actor=event.get("id", ""))


@receiver("invoice.payment_action_required", stage=Stage.DUNNING)
def invoice_payment_action_required(event: dict) -> None:
    services.dunning_invoice_action_required(invoice=event_object(event), at=_at(event), actor=event.get("id", ""))


@receiver("invoice.voided", stage=Stage.DUNNING)
def invoice_voided(event: dict) -> None:
    services.dunning_invoice_voided(invoice_id=event_object(event).get("id", ""), at=_at(event),
                                    actor=event.get("id", ""))


@receiver("invoice.marked_uncollectible", stage=Stage.DUNNING)
def invoice_marked_uncollectible(event: dict) -> None:
    services.dunning_invoice_uncollectible(invoice_id=event_object(event).get("id", ""), at=_at(event),
                                           actor=event.get("id", ""))
