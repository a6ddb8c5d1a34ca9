"""Stripe-shaped invoices and subscriptions (current API, "dahlia": taxes in total_taxes, the subscription
under parent.subscription_details), console rows, and an in-memory page set for reconciliation."""
from __future__ import annotations

import itertools
import time
from datetime import datetime, timezone as dt_timezone

import factory

from billing_console.models import Invoice, LedgerEntry
from tests.stripe_events import stripe_event as shared_stripe_event
from tests.core.factories import CustomerFactory, SubscribedCustomerFactory  # noqa: F401  re-exported

_ids = itertools.count(1)


def next_id(prefix: str) -> str:
    return f"{prefix}{next(_ids):06d}test"


def stripe_invoice(*, id: str | None = None, customer: str = "cus_test000001", subscription: str | None = "sub_test000001",
                   status: str = "open", number: str | None = "INV-0001", currency: str = "usd",
                   lines: list[tuple[str, int]] | None = None, tax: int = 0, amount_paid: int | None = None,
                   created: int | None = None, customer_email: str | None = None, period_start: int | None = None,
                   collection_method: str = "charge_automatically") -> dict:
    created = created or int(time.time()) - 3600
    period_start = period_start or created
    invoice_id = id or next_id("in_")
    lines = lines if lines is not None else [("Pro plan (monthly)", 1234)]
    subtotal = sum(amount for _, amount in lines)
    total = subtotal + tax
    paid = amount_paid if amount_paid is not None else (total if status == "paid" else 0)
    return {
        "id": invoice_id, "object": "invoice", "account_country": "US", "account_name": "Billing Console Sandbox",
        "customer": customer, "customer_email": customer_email, "customer_name": None,
        "created": created, "currency": currency, "status": status, "number": number if status != "draft" else None,
        "billing_reason": "subscription_cycle", "collection_method": collection_method,
        "subtotal": subtotal, "subtotal_excluding_tax": subtotal, "total": total, "total_excluding_tax": subtotal,
        "total_taxes": [{"amount": tax, "tax_behavior": "exclusive", "tax_rate_details": {"tax_rate": "txr_1"},
                         "taxability_reason": "standard_rated", "taxable_amount": subtotal, "type": "tax_rate_details"}]
        if tax else [],
        "amount_due": total, "amount_paid": paid, "amount_remaining": total - paid,
        "period_start": period_start, "period_end": period_start + 30 * 86400,
        "hosted_invoice_url": f"https://invoice.stripe.test/{invoice_id}" if status != "draft" else None,
        "invoice_pdf": None, "livemode": False, "metadata": {},
        "parent": {"type": "subscription_details", "quote_details": None,
                   "subscription_details": {"metadata": {}, "subscription": subscription}} if subscription else None,
        "lines": {"object": "list", "has_more": False, "url": f"/v1/invoices/{invoice_id}/lines", "data": [
            {"id": next_id("il_"), "object": "line_item", "amount": amount, "currency": currency,
             "description": description, "quantity": 1, "invoice": invoice_id,
             "period": {"start": period_start, "end": period_start + 30 * 86400}}
            for description, amount in lines]},
        "status_transitions": {"finalized_at": created if status != "draft" else None, "paid_at": None,
                               "marked_uncollectible_at": None, "voided_at": None},
    }


def stripe_subscription(*, id: str, customer: str, status: str = "active", created: int | None = None) -> dict:
    created = created or int(time.time()) - 86400
    return {"id": id, "object": "subscription", "customer": customer, "status": status, "created": created,
            "items": {"object": "list", "data": [{"id": next_id("si_"), "current_period_start": created,
                                                  "current_period_end": created + 30 * 86400}]}}


def stripe_event(event_type: str, obj: dict, *, created: int | None = None, id: str | None = None) -> dict:
    return shared_stripe_event(event_type, obj=obj, event_id=id or next_id("evt_"), created=created)


class FakeStripePages:
    """Stripe's list endpoints over in-memory objects: newest first, `limit`, `starting_after`,
    `customer`, `created[gte]`, subscription `status=all`. Records every page request."""

    def __init__(self, invoices=(), subscriptions=()):
        self.objects = {"invoices": list(invoices), "subscriptions": list(subscriptions)}
        self.requests: list[tuple[str, dict]] = []

    def __call__(self, resource: str, params: dict) -> dict:
        self.requests.append((resource, dict(params)))
        items = sorted(self.objects[resource], key=lambda o: (o["created"], o["id"]), reverse=True)
        if params.get("customer"):
            items = [o for o in items if o["customer"] == params["customer"]]
        if (params.get("created") or {}).get("gte") is not None:
            items = [o for o in items if o["created"] >= params["created"]["gte"]]
        if params.get("starting_after"):
            ids = [o["id"] for o in items]
            items = items[ids.index(params["starting_after"]) + 1:]
        limit = params.get("limit", 10)
        return {"object": "list", "data": items[:limit], "has_more": len(items) > limit, "url": f"/v1/{resource}"}


def ts(value: datetime) -> int:
    return int(value.timestamp())


def dt(timestamp: int) -> datetime:
    return datetime.fromtimestamp(timestamp, tz=dt_timezone.utc)


class InvoiceFactory(factory.django.DjangoModelFactory):
    """A console invoice row matching `stripe_invoice(...)` defaults."""

    class Meta:
        model = Invoice

    stripe_id = factory.LazyFunction(lambda: next_id("in_"))
    stripe_customer_id = "cus_test000001"
    status = "open"
    currency = "usd"
    subtotal = 1234
    total = 1234
    amount_due = 1234


class LedgerEntryFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = LedgerEntry

    account = "cus_test000001"
    period = "2026-01"
    total = 1234
    currency = "usd"
