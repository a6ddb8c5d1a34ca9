"""Stripe events built from Stripe's own object shapes (sandbox/stripe/fixtures3.json, the OpenAPI
fixtures), with the fields a test cares about overridden."""
import copy
import json
import secrets
import time
from functools import lru_cache
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


@lru_cache(maxsize=1)
def _resources() -> dict:
    return json.loads((ROOT / "sandbox" / "stripe" / "fixtures3.json").read_text())["resources"]


def stripe_object(kind: str, **fields) -> dict:
    obj = copy.deepcopy(_resources()[kind])
    obj.update(fields)
    return obj


def subscription(*, id: str, customer: str, status: str = "active", price: str = "price_sandbox_pro",
                 quantity: int = 1, period_end: int | None = None, **fields) -> dict:
    now = int(time.time())
    sub = stripe_object("subscription", **{
        "id": id, "customer": customer, "status": status, "metadata": {}, "cancel_at": None,
        "cancel_at_period_end": False, "canceled_at": None, "ended_at": None, "pause_collection": None,
        "trial_end": None, "discounts": [], **fields})
    item = sub["items"]["data"][0]
    item.update(subscription=id, quantity=quantity, current_period_start=now,
                current_period_end=period_end or now + 30 * 86400)
    item["price"]["id"] = price
    item.pop("plan", None)
    return sub


def invoice(*, id: str, customer: str, subscription_id: str = "", status: str = "open", amount: int = 900,
            **fields) -> dict:
    inv = stripe_object("invoice", **{
        "id": id, "customer": customer, "status": status, "currency": "usd", "subtotal": amount, "total": amount,
        "amount_due": amount, "amount_paid": amount if status == "paid" else 0,
        "amount_remaining": 0 if status == "paid" else amount, "billing_reason": "subscription_cycle",
        "hosted_invoice_url": f"https://invoice.stripe.test/{id}", "number": f"N-{id[-4:]}",
        "total_discount_amounts": [], "created": int(time.time()) - 60, **fields})
    inv["parent"] = {"type": "subscription_details", "quote_details": None,
                     "subscription_details": {"metadata": {}, "subscription": subscription_id}}
    inv["lines"]["data"] = []
    return inv


def event(event_type: str, obj: dict, *, created: int | None = None, event_id: str | None = None,
          request_id: str | None = None) -> dict:
    return {"id": event_id or f"evt_{secrets.token_hex(10)}", "object": "event", "type": event_type,
            "api_version": "2026-05-27.dahlia", "created": created or int(time.time()), "livemode": False,
            "pending_webhooks": 1, "request": {"id": request_id, "idempotency_key": None},
            "data": {"object": obj}}


# The object each event type carries (by its type's prefix), for "every type" tests.
OBJECT_OF_PREFIX = {
    "billing.meter": "billing.meter", "billing_portal.configuration": "billing_portal.configuration",
    "billing_portal.session": "billing_portal.session", "charge.dispute": "dispute", "charge.refund": "refund",
    "charge": "charge", "checkout.session": "checkout.session", "coupon": "coupon", "customer.discount": "discount",
    "customer.source": "card", "customer.subscription": "subscription", "customer": "customer",
    "invoiceitem": "invoiceitem", "invoice": "invoice", "payment_intent": "payment_intent",
    "payment_method": "payment_method", "plan": "plan", "price": "price", "product": "product",
    "promotion_code": "promotion_code", "refund": "refund", "setup_intent": "setup_intent",
    "subscription_schedule": "subscription_schedule", "tax_rate": "tax_rate",
    "test_helpers.test_clock": "test_helpers.test_clock",
}


def object_for_type(event_type: str) -> dict:
    prefix = max((p for p in OBJECT_OF_PREFIX if event_type.startswith(p + ".")), key=len, default="")
    kind = OBJECT_OF_PREFIX.get(prefix)
    return stripe_object(kind) if kind else {"id": "obj_unknown", "object": event_type.rsplit(".", 1)[0]}
