"""Core receivers for invoice.* events: keep the console's Invoice current and queue delivery."""
from billing_console.events import receiver
from billing_console.invoicing import INVOICE_EVENT_TYPES, invoice_apply_event


@receiver(*INVOICE_EVENT_TYPES)
def apply_invoice_event(event: dict) -> None:
    invoice_apply_event(event=event)
