"""Invoices: creation, finalization, payment attempts and retries by the clock, the API."""
from __future__ import annotations

from .. import shapes
from ..cards import DECLINE_MESSAGES
from ..errors import StripeError, allow
from ..params import as_bool
from ..store import created_filter
from . import payment_methods, subscriptions

DAY = 86400
FIRST_FAILURE = "invoice.first_failure"  # store table: invoice id -> first failed attempt


def create_invoice(emu, sub: dict, billing_reason: str, period_start: int, period_end: int) -> dict:
    customer = emu.store.objects[sub["customer"]]
    invoice_id = shapes.new_id("in_")
    lines = []
    for item in sub["items"]["data"]:
        product = emu.store.objects.get(item["price"]["product"], {})
        description = f"{item['quantity']} × {product.get('name', 'Subscription')} " \
                      f"(at ${item['price']['unit_amount'] / 100:.2f} / {item['price']['recurring']['interval']})"
        lines.append(shapes.invoice_line(line_id=shapes.new_id("il_"), invoice_id=invoice_id,
                                         subscription_id=sub["id"], item=item, period_start=period_start,
                                         period_end=period_end, description=description))
    invoice = shapes.invoice(invoice_id=invoice_id, customer_obj=customer, subscription_obj=sub,
                             lines=lines, created=emu.now(), billing_reason=billing_reason,
                             account_name=emu.account["settings"]["dashboard"]["display_name"])
    return emu.store.put(invoice)


def finalize_invoice(emu, invoice: dict):
    customer = emu.store.objects[invoice["customer"]]
    number = f"{customer['invoice_prefix']}-{customer['next_invoice_sequence']:04d}"
    customer["next_invoice_sequence"] += 1
    now = emu.now()
    invoice.update(status="open", number=number, effective_at=now,
                   hosted_invoice_url=f"{emu.base_url}/invoices/{invoice['id']}",
                   invoice_pdf=f"{emu.base_url}/invoices/{invoice['id']}/pdf",
                   automatically_finalizes_at=None)
    invoice["status_transitions"]["finalized_at"] = now
    emu.emit("invoice.finalized", invoice)


def mark_invoice_paid(emu, invoice: dict):
    now = emu.now()
    invoice.update(status="paid", attempted=True, attempt_count=invoice["attempt_count"] + 1,
                   amount_paid=invoice["amount_due"], amount_remaining=0, next_payment_attempt=None)
    invoice["status_transitions"]["paid_at"] = now
    emu.emit("invoice.paid", invoice)
    emu.emit("invoice.payment_succeeded", invoice)


def attempt_invoice(emu, invoice: dict, pm_id: str | None = None) -> tuple[bool, str | None]:
    """Charge the invoice; on success mark it paid and bring its subscription back to active."""
    customer = emu.store.objects[invoice["customer"]]
    sub = emu.store.objects.get(invoice["subscription"])
    pm_id = pm_id or invoice["default_payment_method"] or (sub or {}).get("default_payment_method")
    ok, decline_code = payment_methods.charge_ok(emu, customer, pm_id)
    if ok:
        mark_invoice_paid(emu, invoice)
        if sub and sub["status"] == "past_due" and sub["latest_invoice"] == invoice["id"]:
            sub["status"] = "active"
            emu.emit("customer.subscription.updated", sub, {"status": "past_due"})
    return ok, decline_code


def record_failure(emu, invoice: dict):
    now = emu.now()
    first = emu.store.table(FIRST_FAILURE).setdefault(invoice["id"], now)
    invoice["attempted"] = True
    invoice["attempt_count"] += 1
    retries_done = invoice["attempt_count"] - 1
    if retries_done < len(emu.retry_days):
        invoice["next_payment_attempt"] = first + emu.retry_days[retries_done] * DAY
    else:
        invoice["next_payment_attempt"] = None
    emu.emit("invoice.payment_failed", invoice)


def retry_invoice(emu, invoice_id: str):
    invoice = emu.store.objects[invoice_id]
    ok, _ = attempt_invoice(emu, invoice)
    if not ok:
        record_failure(emu, invoice)
        if invoice["next_payment_attempt"] is None:
            exhaust_retries(emu, invoice)


def exhaust_retries(emu, invoice: dict):
    """All retries failed: mark the invoice uncollectible and cancel its subscription."""
    invoice["status"] = "uncollectible"
    invoice["status_transitions"]["marked_uncollectible_at"] = emu.now()
    emu.emit("invoice.marked_uncollectible", invoice)
    sub = emu.store.objects.get(invoice["subscription"])
    if sub and sub["status"] != "canceled":
        subscriptions.cancel_subscription(emu, sub, reason="payment_failed")


def invoice_list(emu, params):
    items = emu.store.newest_first("invoice")
    for key in ("customer", "subscription", "status", "collection_method"):
        if key in params:
            value = params.pop(key)
            items = [i for i in items if i[key] == value]
    return emu.store.page(created_filter(items, params.get("created")), params, "/v1/invoices")


def invoice_retrieve(emu, params, id):
    return emu.store.get("invoice", id)


def invoice_lines(emu, params, id):
    invoice = emu.store.get("invoice", id)
    return emu.store.page(invoice["lines"]["data"], params, f"/v1/invoices/{id}/lines")


def invoice_pay(emu, params, id):
    allow(params, {"payment_method", "paid_out_of_band", "off_session", "forgive", "source",
                   "mandate"})
    invoice = emu.store.get("invoice", id)
    if invoice["status"] == "paid":
        raise StripeError(400, "Invoice is already paid")
    if invoice["status"] not in ("open", "uncollectible"):
        raise StripeError(400, f"You can only pay an invoice that is open or uncollectible; this one is "
                               f"{invoice['status']}.")
    if as_bool(params.get("paid_out_of_band", "false"), "paid_out_of_band"):
        mark_invoice_paid(emu, invoice)
        return invoice
    pm_id = params.get("payment_method") or None
    if pm_id:
        pm = emu.store.get("payment_method", pm_id, "payment_method")
        if pm["customer"] != invoice["customer"]:
            raise StripeError(400, "The payment method must be attached to the invoice's customer.",
                              param="payment_method")
    ok, decline_code = attempt_invoice(emu, invoice, pm_id)
    if not ok:
        record_failure(emu, invoice)
        if decline_code == "no_payment_method":
            raise StripeError(400, "This customer has no attached payment source or default payment method. "
                                   "Please consider adding a default payment method.")
        message = DECLINE_MESSAGES.get(decline_code, "Your card was declined.")
        raise StripeError(402, message, type="card_error", code="card_declined", decline_code=decline_code)
    return invoice


def register(api):
    api.add("GET", "/v1/invoices", invoice_list)
    api.add("GET", "/v1/invoices/{id}", invoice_retrieve)
    api.add("GET", "/v1/invoices/{id}/lines", invoice_lines)
    api.add("POST", "/v1/invoices/{id}/pay", invoice_pay)
    api.on_clock(due)


def due(emu, until):
    return [(i["next_payment_attempt"], 1, i["id"], retry_invoice) for i in emu.store.all("invoice")
            if i["status"] == "open" and i["next_payment_attempt"] and i["next_payment_attempt"] <= until]
