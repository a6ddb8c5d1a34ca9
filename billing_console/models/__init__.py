"""Core nouns, one module per domain; every model is importable from here (tables unchanged).

Fields, choices, constraints and small properties only; every write lives in services.
"""
from billing_console.models.customers import E164, Customer, new_salt
from billing_console.models.invoicing import DriftItem, Invoice, InvoiceEvent, LedgerEntry, ReconciliationRun
from billing_console.models.ops import AuditEvent, CronRun
from billing_console.models.stripe import CheckoutAttempt, InboxWake, WebhookEvent

__all__ = [
    "E164", "new_salt", "Customer", "CheckoutAttempt", "WebhookEvent", "InboxWake", "Invoice", "InvoiceEvent", "LedgerEntry",
    "ReconciliationRun", "DriftItem", "CronRun", "AuditEvent",
]
