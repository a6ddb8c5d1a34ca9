"""What an invoice's email and PDF tell the customer beside the figures: one sentence set per state, so
neither can say "Amount paid: $0.00" for a trial or "open" for an invoice nothing is owed on.

    invoice_trial(invoice)           the trial a $0 subscription invoice opens, or None
    invoice_credit(invoice)          (credit applied, earlier balance added): total vs amount due
    invoice_note(invoice, ...)       the closing sentences, for every state where nothing is owed

Stripe semantics used here: an invoice's `total` is what its lines cost after discounts and tax;
`amount_due` is that total less the customer's credit balance and pre-payment credit notes (more, when
an unpaid balance is carried over); `amount_paid` is what a payment brought in. A $0 invoice (a trial,
a 100% discount, a credit that covers it) is marked paid by Stripe as soon as it is finalized. Stripe
flags no line as a trial: the trial's line costs $0 and its period is the trial.
"""
from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from django.utils import timezone

from billing_console.models import Invoice
from billing_console.stripe.statuses import ENDED as ENDED_STATUSES
from billing_console.stripe.statuses import InvoiceStatus
from billing_console.wording.money import money_format
from billing_console.wording.subscription import day, invoice_service_period, price_unit_amount

# Stripe's description of a trial's line ("Trial period for Pro"), for an invoice whose customer the
# console has not linked yet (the trial end is then unknown here).
TRIAL_LINE_PREFIX = "Trial period for "
# Credit and carried balances only mean something once Stripe finalized the invoice and while it stands.
_BALANCE_STATUSES = (InvoiceStatus.OPEN, InvoiceStatus.PAID)


@dataclass(frozen=True)
class Trial:
    start: datetime | None
    end: datetime | None
    first_payment: str  # "$9.00", or "" when it cannot be known (no mirrored price, a discount, tax)
    subscription: str  # "running" | "ending" (set to end with the trial) | "ended"


def _lines(invoice: Invoice) -> list[dict]:
    return [line for line in (((invoice.data or {}).get("lines") or {}).get("data") or []) if isinstance(line, dict)]


def line_price_id(line: dict) -> str:
    """The price a line bills: `pricing.price_details.price` (current API) or `price` (older ones)."""
    price = ((line.get("pricing") or {}).get("price_details") or {}).get("price") or (line.get("price") or "")
    return (price.get("id") or "") if isinstance(price, dict) else str(price)


def _first_payment(invoice: Invoice, lines: list[dict]) -> str:
    """The trial's prices times their quantities, only when that is what will be charged: with a discount
    or tax on the invoice the amount is Stripe's to compute, so none is promised."""
    data = invoice.data or {}
    if (data.get("discounts") or any(line.get("discounts") for line in lines)
            or (data.get("automatic_tax") or {}).get("enabled") or data.get("default_tax_rates")
            or any(line.get("tax_rates") for line in lines)):
        return ""
    total, currency = 0, ""
    for line in lines:
        found = price_unit_amount(line_price_id(line))
        quantity = line.get("quantity") or 1
        if found is None or (currency and found[1] != currency) or not isinstance(quantity, int):
            return ""
        total, currency = total + found[0] * max(quantity, 1), found[1]
    return money_format(total, currency) if currency else ""


def invoice_trial(invoice: Invoice) -> Trial | None:
    """The trial a $0 subscription invoice opens: its lines' period ends at the subscription's trial end
    (or, for an invoice not linked to a customer yet, a line is Stripe's "Trial period for ..."). None for
    any other invoice."""
    lines = _lines(invoice)
    if invoice.total != 0 or invoice.amount_paid or not invoice.subscription_id or not lines:
        return None
    start, end = invoice_service_period(invoice)
    customer = invoice.customer
    current = customer is not None and customer.subscription_id == invoice.subscription_id
    trial_end = customer.trial_end if current else None
    named = any(str(line.get("description") or "").startswith(TRIAL_LINE_PREFIX) for line in lines)
    if not (named or (trial_end and end and abs((trial_end - end).total_seconds()) < 1)):
        return None
    state = "running"
    if current and customer.subscription_status in ENDED_STATUSES:
        state = "ended"
    elif current and customer.cancel_at_period_end:
        state = "ending"
    return Trial(start=start, end=trial_end or end, first_payment=_first_payment(invoice, lines), subscription=state)


def invoice_credit(invoice: Invoice) -> tuple[int, int]:
    """(credit applied, earlier balance added) in minor units: how `amount_due` differs from `total`. A
    negative total (a downgrade's proration) is no balance carried: Stripe credits it to the customer."""
    if invoice.status not in _BALANCE_STATUSES or invoice.total < 0:
        return 0, 0
    gap = invoice.total - invoice.amount_due
    return max(gap, 0), max(-gap, 0)


def invoice_note(invoice: Invoice, *, stamp: str, owed: bool, credit: int, trial: Trial | None,
                 now: datetime | None = None) -> list[str]:
    """The sentences that close the email and the PDF. [] while something is owed (the amount due and
    the pay link say it) and for a draft."""
    if owed:
        return []
    if stamp == "VOID":
        return ["This invoice was voided. Nothing is due."]
    if stamp == "UNCOLLECTIBLE":
        return ["This invoice was marked uncollectible. Nothing more will be charged for it."]
    if stamp == "REFUNDED":
        return ["This invoice was paid and the payment has been refunded in full."]
    if invoice.status not in _BALANCE_STATUSES:
        return []
    if trial is not None:
        return _trial_note(trial, now or timezone.now())
    if invoice.total < 0:
        return [f"Nothing is due: {money_format(-invoice.total, invoice.currency)} is credited to your account "
                "balance and taken off your next invoices."]
    if invoice.total == 0 and not invoice.amount_paid:
        return ["Nothing is charged for this invoice."]
    if not invoice.amount_paid and credit:
        return ["This invoice is paid from your account credit. Nothing more is due." if stamp == "PAID" else
                "Your account credit covers this invoice. Nothing is due."]
    if stamp == "PAID":
        return ["This invoice is paid. Nothing more is due."]
    return ["Nothing is due for this invoice."]


def _trial_note(trial: Trial, now: datetime) -> list[str]:
    ends = day(trial.end)
    if trial.subscription == "ended":
        return ["Nothing was charged for the trial, and the subscription has ended: no payment will be taken."]
    if trial.end and trial.end <= now:
        period = f" ({day(trial.start)} to {ends})" if trial.start else ""
        return [f"Nothing was charged for the trial{period}."]
    if trial.subscription == "ending":
        return ["Trial started: nothing is charged today.",
                f"The subscription is set to end with the trial on {ends}: no payment will be taken."]
    first = f"The first payment of {trial.first_payment}" if trial.first_payment else "The first payment"
    return ["Trial started: nothing is charged today.",
            f"{first} is on {ends}, when the trial ends." if ends else f"{first} is when the trial ends.",
            "Cancel before then and you pay nothing."]
