"""Stripe events for the licensing receivers, in the shapes of ../shared/stripe/fixtures3.json
(API version 2026-05-27.dahlia: the period end is on the subscription's items)."""
import copy
import itertools
import time
from tests.stripe_events import stripe_event

_ids = itertools.count(1)

_SUBSCRIPTION = {
    "id": "sub_1Pgc6rB7WZ01zgkWNy0Cn5nw", "object": "subscription", "customer": "cus_QXg1o8vcGmoR32",
    "status": "active", "cancel_at_period_end": False, "canceled_at": None, "collection_method": "charge_automatically",
    "created": 1721954054, "currency": "usd", "livemode": False, "metadata": {}, "latest_invoice": None,
    "items": {"object": "list", "has_more": False, "url": "/v1/subscription_items", "data": [{
        "id": "si_QXhVnC2h0Jczwc", "object": "subscription_item", "created": 1721954054, "quantity": 1,
        "subscription": "sub_1Pgc6rB7WZ01zgkWNy0Cn5nw", "metadata": {},
        "current_period_start": 1721954054, "current_period_end": 1724632454,
        "price": {"id": "price_sandbox_pro", "object": "price", "active": True, "currency": "usd",
                  "unit_amount": 2000, "product": "prod_QXg1hqf4jFNsqG", "type": "recurring",
                  "recurring": {"interval": "month", "interval_count": 1, "usage_type": "licensed"}},
    }]},
}

_CHECKOUT_SESSION = {
    "id": "cs_test_a1YS1URlnyQCN5fUUduORoQ7Pw41PJqDWkIVQCpJPqkfIhd6tVY8XB1OLY", "object": "checkout.session",
    "mode": "subscription", "status": "complete", "payment_status": "paid", "customer": "cus_QXg1o8vcGmoR32",
    "subscription": "sub_1Pgc6rB7WZ01zgkWNy0Cn5nw", "client_reference_id": None, "metadata": {},
    "customer_details": {"email": "example@example.com", "name": None, "phone": None},
    "created": 1721954000, "expires_at": 1722040400, "livemode": False, "currency": "usd", "amount_total": 2000,
}


def event(event_type: str, obj: dict) -> dict:
    return stripe_event(event_type, obj=obj, event_id=f"evt_lic{next(_ids):08d}")


def subscription(*, sub_id: str, customer: str = "cus_QXg1o8vcGmoR32", status: str = "active",
                 price: str = "price_sandbox_pro", period_days: int = 20) -> dict:
    """A subscription as Stripe sends it now: started ten days ago, renewing in `period_days`."""
    now = int(time.time())
    obj = copy.deepcopy(_SUBSCRIPTION)
    obj.update(id=sub_id, customer=customer, status=status, created=now - 10 * 86400)
    item = obj["items"]["data"][0]
    item["subscription"], item["price"]["id"] = sub_id, price
    item["current_period_start"], item["current_period_end"] = now - 10 * 86400, now + period_days * 86400
    return obj


def checkout_session(*, sub_id: str, customer: str = "cus_QXg1o8vcGmoR32", mode: str = "subscription",
                     email: str = "example@example.com") -> dict:
    obj = copy.deepcopy(_CHECKOUT_SESSION)
    obj.update(subscription=sub_id if mode == "subscription" else None, customer=customer, mode=mode,
               created=int(time.time()) - 60)
    obj["customer_details"]["email"] = email
    return obj
