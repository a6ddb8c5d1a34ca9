"""The invoice PDF: what it says (context from the stored invoice and its lines) and how it is rendered
(WeasyPrint, self-contained: the renderer never reaches the network or the disk) and stored."""
from __future__ import annotations

import logging
import re
from datetime import datetime, timezone as dt_timezone

from django.template.loader import render_to_string

from billing_console.errors import ServiceError
from billing_console.models import Invoice
from billing_console.wording.money import currency_exponent, money_format

# A file name or storage path part made of the invoice number: anything else becomes "_".
_SAFE_PATH = re.compile(r"[^A-Za-z0-9_\-]")


def _ts(value) -> datetime | None:
    try:
        return datetime.fromtimestamp(int(value), tz=dt_timezone.utc) if value else None
    except (TypeError, ValueError, OverflowError):
        return None

log = logging.getLogger("billing_console.invoicing")


def _refuse_fetch(url, *args, **kwargs):
    # The template is self-contained; the renderer must never reach the network or the disk.
    raise ServiceError("external_resource", f"External resource refused: {url}")


def invoice_discounts(invoice: Invoice) -> list[tuple[str, int]]:
    """(name, amount in minor units) per discount, from Stripe's `total_discount_amounts`."""
    rows = []
    for item in ((invoice.data or {}).get("total_discount_amounts") or []):
        if not isinstance(item, dict) or not isinstance(item.get("amount"), int) or not item["amount"]:
            continue
        discount = item.get("discount")
        name = "Discount"
        if isinstance(discount, dict):  # expanded: the coupon's name or code
            coupon = discount.get("coupon") or (discount.get("source") or {}).get("coupon") or {}
            if isinstance(coupon, dict):
                name = coupon.get("name") or coupon.get("id") or name
                if coupon.get("percent_off"):
                    name = f"{name} ({coupon['percent_off']:g}% off)"
        rows.append((name, item["amount"]))
    stored = getattr(invoice, "discount", 0) or 0
    if not rows and stored:
        rows.append(("Discount", stored))
    return rows


def invoice_amount_refunded(invoice: Invoice) -> int:
    """Refunded on the invoice's payment: the stored figure when the refund receivers keep one, else the
    payload's `amount_refunded`, else the credit notes issued after payment."""
    stored = getattr(invoice, "amount_refunded", 0) or 0
    if stored:
        return stored
    data = invoice.data or {}
    for key in ("amount_refunded", "post_payment_credit_notes_amount"):
        value = data.get(key)
        if isinstance(value, int) and not isinstance(value, bool) and value > 0:
            return value
    return 0


def invoice_stamp(invoice: Invoice, refunded: int) -> str:
    """PAID, VOID, UNCOLLECTIBLE or REFUNDED (the whole payment returned); "" while open or draft."""
    if invoice.status == "void":
        return "VOID"
    if invoice.status == "uncollectible":
        return "UNCOLLECTIBLE"
    if invoice.status == "paid":
        return "REFUNDED" if invoice.amount_paid and refunded >= invoice.amount_paid else "PAID"
    return ""


def invoice_status_label(invoice: Invoice, *, refunded: int | None = None) -> str:
    """The word an invoice is shown with (the PDF's badge, the manage page's list): its stamp, else Stripe's
    status, except "nothing due" for an open invoice nothing is owed on (a $0 one Stripe marks paid a
    moment later, or one the account credit covers), which must not read "open"."""
    from billing_console.wording.subscription import invoice_amount_remaining

    stamp = invoice_stamp(invoice, invoice_amount_refunded(invoice) if refunded is None else refunded)
    if stamp:
        return stamp
    if invoice.status == "open" and invoice_amount_remaining(invoice) <= 0:
        return "nothing due"
    return invoice.status or "draft"


def invoice_pdf_context(invoice: Invoice) -> dict:
    """What the PDF and the invoice email say. "Amount due" and the pay link appear only while something is
    still owed; the service period comes from the lines; "Amount paid" only when a payment brought something
    in (or something is owed); a closing note for every state where nothing is owed (billing_console.wording
    .invoice: a trial's $0 invoice says when the first payment is, a credit-paid one says so)."""
    from billing_console.wording.invoice import invoice_credit, invoice_note, invoice_trial
    from billing_console.wording.subscription import invoice_amount_remaining, invoice_service_period

    data = invoice.data or {}
    currency = invoice.currency
    lines = []
    for line in ((data.get("lines") or {}).get("data") or []):
        if not isinstance(line, dict):
            continue
        period = line.get("period") or {}
        lines.append({
            "description": line.get("description") or "Subscription",
            "quantity": line.get("quantity") or 1,
            "amount": money_format(int(line.get("amount") or 0), line.get("currency") or currency),
            "period_start": _ts(period.get("start")),
            "period_end": _ts(period.get("end")),
            "usage_tiers": _line_usage_tiers(line, line.get("currency") or currency),
        })
    customer = invoice.customer
    refunded = invoice_amount_refunded(invoice)
    remaining = invoice_amount_remaining(invoice)
    period_start, period_end = invoice_service_period(invoice)
    stamp = invoice_stamp(invoice, refunded)
    credit, carried = invoice_credit(invoice)
    trial = invoice_trial(invoice)
    note = invoice_note(invoice, stamp=stamp, owed=remaining > 0, credit=credit, trial=trial)
    return {
        "invoice": invoice,
        "number": invoice.number or invoice.stripe_id,
        "issued": invoice.stripe_created,
        "customer_name": (customer.name if customer else "") or data.get("customer_name") or "",
        "customer_email": (customer.email if customer else "") or data.get("customer_email") or "",
        "seller": data.get("account_name") or "Billing Console",
        "lines": lines,
        "period_start": period_start,
        "period_end": period_end,
        "subtotal": money_format(invoice.subtotal, currency),
        "discounts": [{"name": name, "amount": money_format(-amount, currency)} for name, amount in invoice_discounts(invoice)],
        "tax": money_format(invoice.tax, currency),
        "total": money_format(invoice.total, currency),
        "credit_applied": money_format(-credit, currency) if credit else "",
        "balance_added": money_format(carried, currency) if carried else "",
        "amount_paid": money_format(invoice.amount_paid, currency),
        "show_amount_paid": bool(invoice.amount_paid) or remaining > 0,
        "refunded": money_format(refunded, currency) if refunded else "",
        "owed": remaining > 0,
        "amount_due": money_format(remaining, currency),
        "pay_url": invoice.hosted_invoice_url if remaining > 0 else "",
        "stamp": stamp,
        "status_label": invoice_status_label(invoice, refunded=refunded),  # the badge when no stamp applies
        "trial": trial,
        "note": note,
        "currency": currency.upper(),
    }


def _line_usage_tiers(line: dict, currency: str) -> list[str]:
    """A tiered (usage) line's tiers as the invoice shows them: "101 to 1,000: 150 x $0.02 = $3.00"."""
    from decimal import Decimal

    from billing_console.invoicing.usage_selectors import price_tiers, tiered_breakdown

    from billing_console.wording.invoice import line_price_id

    price_id = line_price_id(line)
    priced = price_tiers(price_id) if price_id else None
    if not priced:
        return []
    quantity = Decimal(str(line.get("quantity_decimal") or line.get("quantity") or 0))
    _, rows = tiered_breakdown(priced["tiers"], priced["tiers_mode"], quantity)
    scale = Decimal(10) ** currency_exponent(currency)
    texts, lower = [], 0
    for row in rows:
        upper = row["up_to"]
        bounds = (f"{lower + 1:,} and up" if upper in (None, "inf") else f"{lower + 1:,} to {int(upper):,}") \
            if priced["tiers_mode"] != "volume" else f"all units (volume tier up to {upper or 'any'})"
        unit = (row["unit_amount"] / scale).normalize()
        text = f"{bounds}: {row['units'].normalize():f} x {unit:f} {currency.upper()}"
        if row["flat_amount"]:
            text += f" + {money_format(int(row['flat_amount']), currency)} flat"
        texts.append(f"{text} = {money_format(row['amount'], currency)}")
        lower = int(upper) if upper not in (None, "inf") else lower
    return texts


def invoice_render_pdf(invoice: Invoice) -> bytes:
    import weasyprint  # heavy import; only the worker that renders pays for it

    html = render_to_string("invoices/invoice.html", invoice_pdf_context(invoice))
    return weasyprint.HTML(string=html, url_fetcher=_refuse_fetch).write_pdf()


def invoice_pdf_path(invoice: Invoice) -> str:
    customer = _SAFE_PATH.sub("_", invoice.stripe_customer_id or "unknown")
    return f"invoices/{customer}/{_SAFE_PATH.sub('_', invoice.stripe_id)}.pdf"
