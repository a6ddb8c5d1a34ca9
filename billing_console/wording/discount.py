"""A discount (coupon) in words, and what it takes off a renewal: one place for the manage page, the emails,
the support console and the "Next payment" amount.

Reads `Customer.discount` (billing_console/stripe/objects.py:discount_summary): coupon name, percent_off or
amount_off + currency, duration (once, repeating, forever), duration_in_months, start and end (Unix times).
"""
from __future__ import annotations

from datetime import datetime, timezone as dt_timezone
from decimal import ROUND_HALF_UP, Decimal, InvalidOperation

from billing_console.wording.money import money_format


def _percent(value) -> Decimal | None:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return None
    try:
        percent = Decimal(str(value))
    except InvalidOperation:
        return None
    return percent if 0 < percent <= 100 else None


def _amount_off(discount: dict) -> int | None:
    amount = discount.get("amount_off")
    if isinstance(amount, bool) or not isinstance(amount, int) or amount <= 0 or not discount.get("currency"):
        return None
    return amount


def _when(timestamp) -> datetime | None:
    if isinstance(timestamp, bool) or not isinstance(timestamp, int) or timestamp <= 0:
        return None
    return datetime.fromtimestamp(timestamp, tz=dt_timezone.utc)


def discount_off_words(discount: dict) -> str:
    """"25% off", "$5.00 off"; "" when the coupon's details are not known."""
    percent = _percent(discount.get("percent_off"))
    if percent is not None:
        return f"{percent.normalize():f}% off"
    amount = _amount_off(discount)
    return f"{money_format(amount, discount['currency'])} off" if amount is not None else ""


def discount_words(discount: dict | None) -> str:
    """"Live 25: 25% off, forever", "$5.00 off for 3 months (until 27 February 2027)", "25% off once";
    "Coupon LIVE25" when only the coupon's id is known; "" when nothing can be said (no discount, or one
    named only by its id)."""
    from billing_console.wording import counted
    from billing_console.wording.subscription import day

    if not isinstance(discount, dict) or not discount:
        return ""
    name = discount.get("name") if isinstance(discount.get("name"), str) else ""
    off = discount_off_words(discount)
    if not off:
        coupon = discount.get("coupon") if isinstance(discount.get("coupon"), str) else ""
        return name or (f"Coupon {coupon}" if coupon else "")
    duration = discount.get("duration")
    if duration == "forever":
        off += ", forever"
    elif duration == "once":
        off += " once"
    elif duration == "repeating":
        months = discount.get("duration_in_months")
        if isinstance(months, int) and not isinstance(months, bool) and months > 0:
            off += f" for {counted(months, 'month')}"
        end = _when(discount.get("end"))
        if end:
            off += f" (until {day(end)})"
    if name.strip() and name.strip().lower() != discount_off_words(discount).lower():
        return f"{name.strip()}: {off}"
    return off


def discount_in_force(discount: dict | None, *, at: datetime, used: bool = False) -> bool:
    """Whether the discount still takes something off an invoice made at `at`: forever always, repeating
    until its end, once until an invoice has used it. One whose duration is not known counts as in force."""
    if not isinstance(discount, dict) or not discount:
        return False
    duration = discount.get("duration")
    if duration == "once":
        return not used
    if duration == "repeating":
        end = _when(discount.get("end"))
        return end is None or at < end
    return True


def discount_used_since_start(discount: dict | None, invoices, subscription_id: str) -> bool:
    """A `once` discount is used by the first invoice of its subscription that it reduced."""
    if not isinstance(discount, dict) or not discount:
        return False
    start = _when(discount.get("start"))
    for invoice in invoices:
        if invoice.discount <= 0 or invoice.status in ("void", "draft", ""):
            continue
        if subscription_id and invoice.subscription_id and invoice.subscription_id != subscription_id:
            continue
        if start is None or invoice.stripe_created is None or invoice.stripe_created >= start:
            return True
    return False


def discounted_amount(amount: int, currency: str, discount: dict) -> int | None:
    """`amount` (minor units) after the discount, rounded half up as Stripe does; None when the discount's
    details are not known or its amount is in another currency (the words then give no amount)."""
    percent = _percent(discount.get("percent_off"))
    if percent is not None:
        off = (Decimal(amount) * percent / 100).quantize(Decimal(1), rounding=ROUND_HALF_UP)
        return max(amount - int(off), 0)
    off = _amount_off(discount)
    if off is None or (discount.get("currency") or "").lower() != (currency or "").lower():
        return None
    return max(amount - off, 0)
