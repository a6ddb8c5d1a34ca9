"""Read Stripe objects (plain dicts) the same way whatever API shape they come in.

The console pins STRIPE_API_VERSION (2026-05-27.dahlia): a subscription's period lives on its
items, an invoice names its subscription under `parent.subscription_details`. Older shapes (the
top-level fields) are read as a fallback so replayed or legacy events still work. Every app reads
Stripe objects through these helpers instead of guessing paths.
"""
from __future__ import annotations

from datetime import datetime, timezone as dt_timezone

from billing_console.stripe.statuses import ENDED

# Where the console's checkout token travels (metadata of the session and of the subscription).
CHECKOUT_TOKEN_KEY = "checkout_token"
PLAN_KEY = "plan"


def obj_id(value) -> str:
    """The id of a field that may be an id string or an expanded object."""
    if isinstance(value, dict):
        value = value.get("id")
    return value if isinstance(value, str) else ""


def _mapping(value) -> dict:
    return value if isinstance(value, dict) else {}


def to_datetime(timestamp) -> datetime | None:
    if timestamp in (None, "", 0):
        return None
    return datetime.fromtimestamp(int(timestamp), tz=dt_timezone.utc)


def event_object(event: dict) -> dict:
    """The event's object; {} when a signed event carries something else there (stored, then ignored)."""
    obj = (event.get("data") or {}).get("object")
    return obj if isinstance(obj, dict) else {}


def event_created(event: dict) -> datetime | None:
    return to_datetime(event.get("created"))


def metadata(obj: dict) -> dict:
    return _mapping(obj.get("metadata"))


# --- Subscriptions ------------------------------------------------------------------------------
def subscription_items(sub: dict) -> list[dict]:
    return ((sub.get("items") or {}).get("data")) or []


def subscription_period_end(sub: dict) -> datetime | None:
    """Current period end: the latest of the items' (current API), else the top-level field (older API)."""
    ends = [item.get("current_period_end") for item in subscription_items(sub) if item.get("current_period_end")]
    if ends:
        return to_datetime(max(ends))
    return to_datetime(sub.get("current_period_end"))


def subscription_period_start(sub: dict) -> datetime | None:
    starts = [item.get("current_period_start") for item in subscription_items(sub) if item.get("current_period_start")]
    if starts:
        return to_datetime(min(starts))
    return to_datetime(sub.get("current_period_start"))


def subscription_price_id(sub: dict) -> str:
    for item in subscription_items(sub):
        price = item.get("price") or item.get("plan")
        if price:
            return obj_id(price)
    return obj_id(sub.get("plan"))


def subscription_quantity(sub: dict) -> int:
    """Seats of the subscription's first item (the console sells one price per subscription)."""
    for item in subscription_items(sub):
        try:
            return max(int(item.get("quantity") or 1), 1)
        except (TypeError, ValueError):
            return 1
    return 1


# --- Discounts -----------------------------------------------------------------------------------
COUPON_DURATIONS = ("once", "repeating", "forever")


def _number(value) -> int | float | None:
    """A JSON number as Stripe sends it (never a bool), else None."""
    return value if isinstance(value, (int, float)) and not isinstance(value, bool) and value >= 0 else None


def _timestamp(value) -> int | None:
    return value if isinstance(value, int) and not isinstance(value, bool) and value > 0 else None


def discount_coupon(discount: dict):
    """A discount's coupon: the current API's `source.coupon`, else the older top-level `coupon`; an id, an
    expanded coupon (dict), or None."""
    source = _mapping(discount.get("source"))
    coupon = source.get("coupon") or discount.get("coupon")
    return coupon if isinstance(coupon, (str, dict)) and coupon else None


def coupon_summary(coupon: dict) -> dict:
    """What a page needs of an expanded coupon; a field of the wrong type is left out, never trusted."""
    name, currency = coupon.get("name"), coupon.get("currency")
    summary = {"coupon": obj_id(coupon)[:255], "name": name[:120] if isinstance(name, str) else "",
               "duration": coupon.get("duration") if coupon.get("duration") in COUPON_DURATIONS else "",
               "percent_off": _number(coupon.get("percent_off")), "amount_off": None, "currency": "",
               "duration_in_months": None}
    amount_off = _number(coupon.get("amount_off"))
    if summary["percent_off"] is None and isinstance(amount_off, int) and isinstance(currency, str) and currency:
        summary.update(amount_off=amount_off, currency=currency[:3].lower())
    months = coupon.get("duration_in_months")
    if summary["duration"] == "repeating" and isinstance(months, int) and not isinstance(months, bool) and months > 0:
        summary["duration_in_months"] = months
    return summary


def discount_summary(discount) -> dict:
    """What the console keeps of a Stripe discount (Customer.discount): its id, its subscription (empty: the
    customer's own discount), its coupon (the id; name, percent or amount off, duration when the coupon is
    expanded), start and end. {} when it names neither an id nor a coupon."""
    if not isinstance(discount, dict):
        return {}
    coupon = discount_coupon(discount)
    discount_id = obj_id(discount.get("id"))
    if not discount_id.startswith("di_"):
        discount_id = ""
    if not discount_id and not coupon:
        return {}
    summary = {"discount": discount_id[:255], "subscription": obj_id(discount.get("subscription"))[:255],
               "coupon": obj_id(coupon)[:255] if coupon else "", "start": _timestamp(discount.get("start")),
               "end": _timestamp(discount.get("end"))}
    if isinstance(coupon, dict):
        summary.update(coupon_summary(coupon))
    return summary


def discount_has_coupon_details(summary: dict) -> bool:
    """Whether a kept discount already says what it takes off (its coupon was expanded once)."""
    return bool(summary.get("duration")) and (summary.get("percent_off") is not None or bool(summary.get("amount_off")))


def subscription_discounts(sub: dict) -> list:
    """The subscription's discounts in Stripe's order: ids (the current API's `discounts`) or expanded
    discounts; the older single `discount` first."""
    found = [d for d in (sub.get("discounts") if isinstance(sub.get("discounts"), list) else [])
             if (isinstance(d, str) and d) or isinstance(d, dict)]
    if isinstance(sub.get("discount"), dict):
        found = [sub["discount"], *[d for d in found if obj_id(d) != obj_id(sub["discount"])]]
    return found


def subscription_customer_id(sub: dict) -> str:
    return obj_id(sub.get("customer"))


def subscription_cancel_at_period_end(sub: dict) -> bool:
    """Scheduled to end: the flag, or (current API) a `cancel_at` set on a still-running subscription."""
    if sub.get("cancel_at_period_end"):
        return True
    return bool(sub.get("cancel_at")) and sub.get("status") not in ENDED


def subscription_state_time(sub: dict, event_created: datetime | None = None) -> datetime | None:
    """When this subscription state was true, for the watermark: the event's time, or (for a
    re-read) the newest of the object's own timestamps."""
    if event_created:
        return event_created
    stamps = [sub.get(k) for k in ("created", "canceled_at", "ended_at", "current_period_start")]
    stamps += [item.get("current_period_start") for item in subscription_items(sub)]
    stamps = [int(s) for s in stamps if s]
    return to_datetime(max(stamps)) if stamps else None


def checkout_token(obj: dict) -> str:
    """The console's checkout token on a session (metadata, then client_reference_id) or a subscription."""
    return metadata(obj).get(CHECKOUT_TOKEN_KEY) or (obj.get("client_reference_id") or "")


# --- Checkout sessions --------------------------------------------------------------------------
def session_email(session: dict) -> str:
    details = session.get("customer_details") or {}
    return (details.get("email") or session.get("customer_email") or "").strip().lower()


def session_name(session: dict) -> str:
    return ((session.get("customer_details") or {}).get("name") or "").strip()


def session_phone(session: dict) -> str:
    """The phone Checkout collected (phone_number_collection), as the customer typed it."""
    phone = (session.get("customer_details") or {}).get("phone")
    return phone.strip() if isinstance(phone, str) else ""


# --- Invoices -----------------------------------------------------------------------------------
def invoice_subscription_id(invoice: dict) -> str:
    """`parent.subscription_details.subscription` (current API), else `subscription` (older)."""
    parent = _mapping(invoice.get("parent"))
    details = _mapping(parent.get("subscription_details"))
    if details.get("subscription"):
        return obj_id(details["subscription"])
    sub = obj_id(invoice.get("subscription"))
    if sub:
        return sub
    for line in ((invoice.get("lines") or {}).get("data")) or []:
        line_parent = _mapping(_mapping(line.get("parent")).get("subscription_item_details"))
        if line_parent.get("subscription"):
            return obj_id(line_parent["subscription"])
        if line.get("subscription"):
            return obj_id(line["subscription"])
    return ""


def invoice_subscription_metadata(invoice: dict) -> dict:
    """The subscription's metadata as the invoice carries it (current API only)."""
    details = _mapping(_mapping(invoice.get("parent")).get("subscription_details"))
    return _mapping(details.get("metadata"))


def invoice_customer_id(invoice: dict) -> str:
    return obj_id(invoice.get("customer"))


def invoice_period(invoice: dict) -> tuple[datetime | None, datetime | None]:
    """The service period billed: from the lines (current API), else the invoice's own fields."""
    lines = ((invoice.get("lines") or {}).get("data")) or []
    starts = [(line.get("period") or {}).get("start") for line in lines]
    ends = [(line.get("period") or {}).get("end") for line in lines]
    starts, ends = [s for s in starts if s], [e for e in ends if e]
    if starts and ends:
        return to_datetime(min(starts)), to_datetime(max(ends))
    return to_datetime(invoice.get("period_start")), to_datetime(invoice.get("period_end"))


# --- Whose object is it --------------------------------------------------------------------------
def customer_keys(obj: dict) -> dict[str, str]:
    """What a Stripe object tells about the console customer it belongs to: its subscription id, Stripe
    customer id, the console's checkout token and (for the objects a person typed it into: checkout
    sessions and Stripe customers) an email. Missing keys are ""."""
    kind = obj.get("object")
    keys = {"subscription_id": "", "stripe_customer_id": obj_id(obj.get("customer")),
            "checkout_token": checkout_token(obj), "email": ""}
    if kind == "subscription":
        keys["subscription_id"] = obj_id(obj.get("id"))
    elif kind == "invoice":
        keys["subscription_id"] = invoice_subscription_id(obj)
        keys["checkout_token"] = keys["checkout_token"] or invoice_subscription_metadata(obj).get(CHECKOUT_TOKEN_KEY, "")
    elif kind == "checkout.session":
        keys["subscription_id"] = obj_id(obj.get("subscription"))
        keys["email"] = session_email(obj)
    elif kind == "customer":
        keys["stripe_customer_id"] = obj_id(obj.get("id"))
        keys["email"] = (obj.get("email") or "").strip().lower()
        keys["checkout_token"] = ""
    else:
        keys["subscription_id"] = obj_id(obj.get("subscription"))
    return keys


# --- Events -------------------------------------------------------------------------------------
def event_object_id(event: dict) -> str:
    return obj_id(event_object(event).get("id"))


def event_customer_id(event: dict) -> str:
    obj = event_object(event)
    if obj.get("object") == "customer":
        return obj.get("id") or ""
    return obj_id(obj.get("customer"))
