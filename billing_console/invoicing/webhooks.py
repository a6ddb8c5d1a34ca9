"""Core receivers for invoice.* events: keep the console's Invoice current and queue delivery."""
import logging

from billing_console.invoicing.services import INVOICE_EVENT_TYPES, InvoiceShapeError, invoice_apply_event
from billing_console.stripe.dispatch import Stage, receiver

log = logging.getLogger("billing_console.invoicing")


@receiver(*INVOICE_EVENT_TYPES, stage=Stage.CORE)
def apply_invoice_event(event: dict) -> None:
    try:
        invoice_apply_event(event=event)
    except InvoiceShapeError as exc:
        # One invoice we cannot read must not fail the event for the other apps' receivers (dunning
        # reacts to the same invoice.* events); it is logged, and reconciliation reports the gap.
        log.warning("invoice event %s skipped: %s", event.get("id", "?"), exc,
                    extra={"event": "invoice_event_skipped", "event_type": event.get("type", ""), "error": str(exc)})
