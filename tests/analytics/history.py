"""A fixture history of invoices in Stripe's current shape, with hand-computed MRR (see test_mrr.py).

NOW = 2026-07-15 12:00 UTC; the window is Feb..Jul 2026 (6 months) with January as the baseline.
Prices: pro 10.00 USD/month, team 30.00 USD/month, team yearly 240.00 EUR/year (not a plan code).
"""
from __future__ import annotations

import itertools
from datetime import datetime, timezone

from billing_console.models import Customer, Invoice, WebhookEvent

NOW = datetime(2026, 7, 15, 12, 0, tzinfo=timezone.utc)
DAY = 86400
_ids = itertools.count(1)


_shift = [0]  # months every date moves by (the browser test replays the history up to today)


def at(y, m, d=1, h=0) -> datetime:
    index = y * 12 + m - 1 + _shift[0]
    return datetime(index // 12, index % 12 + 1, d, h, tzinfo=timezone.utc)


def ts(moment: datetime) -> int:
    return int(moment.timestamp())


def line(*, sub, item, price, start, end, amount, quantity=1, proration=False, discount=0, one_off=False) -> dict:
    """An invoice line as the pinned API version sends it (parent.subscription_item_details, pricing)."""
    parent = ({"type": "invoice_item_details", "invoice_item_details": {"invoice_item": f"ii_{next(_ids)}",
                                                                         "proration": False, "subscription": None},
               "subscription_item_details": None} if one_off else
              {"type": "subscription_item_details", "invoice_item_details": None,
               "subscription_item_details": {"invoice_item": None, "proration": proration,
                                             "proration_details": {"credited_items": None},
                                             "subscription": sub, "subscription_item": item}})
    return {"object": "line_item", "id": f"il_{next(_ids)}", "amount": amount, "currency": "usd",
            "period": {"start": ts(start), "end": ts(end)}, "quantity": quantity, "parent": parent,
            "discount_amounts": [{"amount": discount, "discount": "di_test"}] if discount else [],
            "pricing": {"type": "price_details", "price_details": {"price": price, "product": "prod_x"},
                        "unit_amount_decimal": str(amount // max(quantity, 1))}}


def invoice(customer: Customer, *, sub, lines, created, status="paid", currency="usd", **data) -> Invoice:
    total = sum(ln["amount"] - sum(d["amount"] for d in ln["discount_amounts"]) for ln in lines)
    for ln in lines:
        ln["currency"] = currency
    stripe_id = f"in_fixture{next(_ids):05d}"
    obj = {"object": "invoice", "id": stripe_id, "customer": customer.stripe_customer_id, "currency": currency,
           "status": status, "total": total, "lines": {"object": "list", "data": lines, "has_more": False},
           **data}
    return Invoice.objects.create(stripe_id=stripe_id, customer=customer, stripe_customer_id=customer.stripe_customer_id,
                                  subscription_id=sub, status=status, currency=currency, subtotal=total, total=total,
                                  amount_due=total, amount_paid=total if status == "paid" else 0,
                                  stripe_created=created, data=obj)


def monthly(customer, *, sub, item, price, months, amount, discount_from=None, discount=0, status_of=None,
            currency="usd", quantity=1):
    """One paid invoice per calendar month (y, m) in `months`, billing that month."""
    for y, m in months:
        start, end = at(y, m), at(y + (m == 12), m % 12 + 1)
        disc = discount if discount_from and (y, m) >= discount_from else 0
        status = (status_of or {}).get((y, m), "paid")
        invoice(customer, sub=sub, created=start, status=status, currency=currency,
                lines=[line(sub=sub, item=item, price=price, start=start, end=end, amount=amount, discount=disc,
                            quantity=quantity)])


def ended(sub: str, *, when: datetime, reason: str) -> None:
    """The customer.subscription.deleted event as stored by the webhook endpoint."""
    WebhookEvent.objects.create(
        stripe_id=f"evt_{next(_ids)}", type="customer.subscription.deleted", stripe_created=when, object_id=sub,
        status=WebhookEvent.Status.PROCESSED,
        payload={"type": "customer.subscription.deleted", "data": {"object": {
            "id": sub, "object": "subscription", "status": "canceled", "ended_at": ts(when),
            "cancellation_details": {"reason": reason, "comment": None, "feedback": None}}}})


def customer(name: str, **fields) -> Customer:
    return Customer.objects.create(email=f"{name}@example.com", name=name.title(),
                                   stripe_customer_id=f"cus_{name}", **fields)


def build_history(*, shift_months: int = 0) -> dict[str, Customer]:
    """The fixture history; `shift_months` moves every date (and so NOW) by that many months."""
    _shift[0] = shift_months
    try:
        return _build()
    finally:
        _shift[0] = 0


def _build() -> dict[str, Customer]:
    c = {name: customer(name) for name in ("alice", "bob", "carol", "dave", "erik", "fiona", "gina", "hank")}
    jan_to_jul = [(2026, m) for m in range(1, 8)]

    # Alice: new in March on Pro; upgrades to Team on 16 April with proration (expansion); a voided
    # February invoice never counts.
    invoice(c["alice"], sub="sub_alice", created=at(2026, 2), status="void",
            lines=[line(sub="sub_alice", item="si_alice", price="price_pro", start=at(2026, 2), end=at(2026, 3),
                        amount=1000)])
    monthly(c["alice"], sub="sub_alice", item="si_alice", price="price_pro", months=[(2026, 3), (2026, 4)], amount=1000)
    invoice(c["alice"], sub="sub_alice", created=at(2026, 4, 16), lines=[
        line(sub="sub_alice", item="si_alice", price="price_pro", start=at(2026, 4, 16), end=at(2026, 5),
             amount=-500, proration=True),
        line(sub="sub_alice", item="si_alice", price="price_team", start=at(2026, 4, 16), end=at(2026, 5),
             amount=1500, proration=True)])
    monthly(c["alice"], sub="sub_alice", item="si_alice", price="price_team", months=[(2026, m) for m in (5, 6, 7)],
            amount=3000)

    # Bob: Team since January; a 25 % coupon from May (contraction); June's payment refunded by credit note.
    monthly(c["bob"], sub="sub_bob", item="si_bob", price="price_team", months=jan_to_jul, amount=3000,
            discount_from=(2026, 5), discount=750)
    Invoice.objects.filter(customer=c["bob"], stripe_created=at(2026, 6)).update(
        data={**Invoice.objects.get(customer=c["bob"], stripe_created=at(2026, 6)).data,
              "post_payment_credit_notes_amount": 2250})
    # ...and a one-off charge, which is not recurring revenue.
    invoice(c["bob"], sub="", created=at(2026, 6, 5), lines=[
        line(sub="", item="", price="price_setup", start=at(2026, 6, 5), end=at(2026, 6, 5, 1), amount=5000,
             one_off=True)])

    # Carol: Pro since January, cancels at the end of March (voluntary), returns on 10 June (reactivated).
    monthly(c["carol"], sub="sub_carol1", item="si_carol1", price="price_pro", months=jan_to_jul[:3], amount=1000)
    ended("sub_carol1", when=at(2026, 4), reason="cancellation_requested")
    for start, end in ((at(2026, 6, 10), at(2026, 7, 10)), (at(2026, 7, 10), at(2026, 8, 10))):
        invoice(c["carol"], sub="sub_carol2", created=start,
                lines=[line(sub="sub_carol2", item="si_carol2", price="price_pro", start=start, end=end, amount=1000)])

    # Dave: Pro since January; May's renewal fails and Stripe cancels on 20 May (involuntary).
    monthly(c["dave"], sub="sub_dave", item="si_dave", price="price_pro", months=jan_to_jul[:5], amount=1000,
            status_of={(2026, 5): "open"})
    ended("sub_dave", when=at(2026, 5, 20), reason="payment_failed")

    # Erik: EUR, two seats of a yearly 240.00 EUR price from March: 480.00 / 12 = 40.00 EUR a month.
    invoice(c["erik"], sub="sub_erik", created=at(2026, 3), currency="eur", lines=[
        line(sub="sub_erik", item="si_erik", price="price_team_year_eur", start=at(2026, 3), end=at(2027, 3),
             amount=48000, quantity=2)])

    # Fiona: a 14-day trial from 1 April, paying Pro from 15 April (a trial converting in April).
    invoice(c["fiona"], sub="sub_fiona", created=at(2026, 4), lines=[
        line(sub="sub_fiona", item="si_fiona", price="price_pro", start=at(2026, 4), end=at(2026, 4, 15), amount=0)])
    for m in (4, 5, 6, 7):
        start, end = at(2026, m, 15), at(2026, m + 1, 15)
        invoice(c["fiona"], sub="sub_fiona", created=start,
                lines=[line(sub="sub_fiona", item="si_fiona", price="price_pro", start=start, end=end, amount=1000)])

    # Gina: trialing now (10-24 July).
    invoice(c["gina"], sub="sub_gina", created=at(2026, 7, 10), lines=[
        line(sub="sub_gina", item="si_gina", price="price_pro", start=at(2026, 7, 10), end=at(2026, 7, 24), amount=0)])

    # Hank: Pro since January; March's invoice is never paid and no cancellation event was stored: his
    # churn in April is involuntary because his last invoice was left open.
    monthly(c["hank"], sub="sub_hank", item="si_hank", price="price_pro", months=jan_to_jul[:3], amount=1000,
            status_of={(2026, 3): "open"})
    Customer.objects.filter(pk=c["hank"].pk).update(subscription_id="sub_hank", subscription_status="canceled")
    return c
