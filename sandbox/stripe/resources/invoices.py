"""Invoices: drafts from subscriptions and pending invoice items, totals with discounts and taxes as
Stripe computes them, finalization, payment attempts and retries by the clock, the API.

Other families call `create_invoice` (a subscription's invoice), `finalize_invoice`, `mark_invoice_paid`,
`attempt_invoice`, `record_failure`, `exhaust_retries`, and `recompute` after changing lines.
"""
from __future__ import annotations

import copy
from decimal import Decimal

from .. import shapes
from ..cards import DECLINE_MESSAGES
from ..errors import StripeError, allow, metadata as merge_metadata, required
from ..params import as_bool, as_int
from ..store import created_filter
from . import coupons, meters, payment_intents, subscriptions, tax_rates

DAY = 86400
FIRST_FAILURE = "invoice.first_failure"   # store table: invoice id -> first failed attempt
LINE_TAX_RATES = "invoice.line_tax_rates"  # line id -> tax rate ids set on the line itself
USAGE_BILLED = "subscription_item.usage_billed_until"  # item id -> end of the usage already invoiced
AUTO_FINALIZE_SECONDS = 3600  # Stripe finalizes an auto-advancing draft about an hour after creation

UPDATE_FIELDS = {"auto_advance", "collection_method", "days_until_due", "due_date", "description", "metadata",
                 "discounts", "default_tax_rates", "default_payment_method", "footer", "statement_descriptor",
                 "custom_fields", "rendering", "payment_settings", "automatic_tax"}
CREATE_FIELDS = UPDATE_FIELDS | {"customer", "subscription", "currency", "pending_invoice_items_behavior"}


# -- building invoices and lines ----------------------------------------------------------------
def build_invoice(emu, *, customer: dict, billing_reason: str, currency: str, sub: dict | None = None,
                  invoice_id: str | None = None) -> dict:
    obj = shapes.example("invoice")
    invoice_id = invoice_id or shapes.new_id("in_")
    now = emu.now()
    obj.update(
        id=invoice_id, customer=customer["id"], customer_email=customer["email"],
        customer_name=customer["name"], customer_phone=customer["phone"], customer_address=None,
        customer_shipping=None, account_name=emu.account["settings"]["dashboard"]["display_name"],
        created=now, effective_at=None, currency=currency, billing_reason=billing_reason, status="draft",
        number=None, auto_advance=True, amount_due=0, amount_paid=0, amount_remaining=0, amount_overpaid=0,
        subtotal=0, subtotal_excluding_tax=0, total=0, total_excluding_tax=0, total_discount_amounts=[],
        total_taxes=[], total_pretax_credit_amounts=[], attempt_count=0, attempted=False, due_date=None,
        next_payment_attempt=None, period_start=now, period_end=now, hosted_invoice_url=None,
        invoice_pdf=None, from_invoice=None, last_finalization_error=None, latest_revision=None,
        shipping_cost=None, shipping_details=None, webhooks_delivered_at=None,
        automatically_finalizes_at=now + AUTO_FINALIZE_SECONDS, receipt_number=None, ending_balance=None,
        metadata={}, default_payment_method=None, description=None, footer=None, discounts=[],
        default_tax_rates=[], collection_method="charge_automatically", test_clock=customer.get("test_clock"),
        # Older shape, still read by dj-stripe 2.11's Invoice.
        subscription=sub["id"] if sub else None,
    )
    obj["status_transitions"] = {"finalized_at": None, "marked_uncollectible_at": None, "paid_at": None,
                                 "voided_at": None}
    obj["automatic_tax"] = {"enabled": False, "liability": None, "status": None, "disabled_reason": None,
                            "provider": None}
    obj["parent"] = ({"type": "subscription_details", "quote_details": None,
                      "subscription_details": {"metadata": copy.deepcopy(sub["metadata"]), "subscription": sub["id"]}}
                     if sub else None)
    obj["payment_settings"] = {"default_mandate": None, "payment_method_options": None,
                               "payment_method_types": None}
    obj["lines"] = {"object": "list", "data": [], "has_more": False, "total_count": 0,
                    "url": f"/v1/invoices/{invoice_id}/lines"}
    return obj


def build_line(*, invoice_id: str, amount: int, currency: str, description, period: tuple[int, int],
               quantity, price: dict | None, parent: dict, discountable: bool = True, discounts=None,
               subscription_id=None, metadata=None, quantity_decimal=None) -> dict:
    obj = shapes.example("line_item")
    obj.update(id=shapes.new_id("il_"), invoice=invoice_id, amount=amount, subtotal=amount, currency=currency,
               description=description, period={"start": period[0], "end": period[1]}, quantity=quantity,
               quantity_decimal=quantity_decimal, discountable=discountable, discounts=list(discounts or []),
               discount_amounts=[], taxes=[], pretax_credit_amounts=[], metadata=copy.deepcopy(metadata or {}),
               livemode=False,
               # Older shape, still read by dj-stripe 2.11's InvoiceLineItem.
               subscription=subscription_id)
    obj["parent"] = parent
    if price:
        obj["pricing"] = {"type": "price_details", "unit_amount_decimal": price.get("unit_amount_decimal"),
                          "price_details": {"price": price["id"], "product": price["product"]}}
    else:
        obj["pricing"] = {"type": "price_details", "unit_amount_decimal": None, "price_details": None}
    return obj


def price_amount(emu, price: dict, quantity) -> int:
    """What `quantity` units of `price` cost: per unit, or by its graduated/volume tiers."""
    if price.get("billing_scheme") == "tiered":
        return meters.tiered_amount(emu.store.table(meters.TIERS)[price["id"]], price["tiers_mode"],
                                    Decimal(str(quantity)))
    return tax_rates.round_half_up(Decimal(price["unit_amount_decimal"]) * Decimal(str(quantity)))


def item_description(price: dict, quantity, product_name: str) -> str:
    shown = meters.as_number(Decimal(str(quantity)))
    if price.get("unit_amount") is None:
        return f"{shown} × {product_name} (tiered)"
    return f"{shown} × {product_name} (at ${price['unit_amount'] / 100:.2f} / {price['recurring']['interval']})"


def subscription_lines(emu, sub: dict, invoice_id: str, billing_reason: str, period_start: int, period_end: int,
                       preview: bool = False) -> list[dict]:
    """Licensed items billed in advance for the new period; metered items in arrears, for the usage the
    meter counted since it was last invoiced (nothing before the first period ends)."""
    lines = []
    billed = emu.store.table(USAGE_BILLED)
    for item in sub["items"]["data"]:
        price = emu.store.objects.get(item["price"]["id"], item["price"])
        product = emu.store.objects.get(price["product"], {})
        name = product.get("name", "Subscription")
        recurring = price.get("recurring") or {}
        if recurring.get("usage_type") == "metered":
            start = billed.get(item["id"], sub["start_date"])
            end = period_start if billing_reason != "subscription_create" else start
            meter = emu.store.objects.get(recurring.get("meter"))
            quantity = meters.aggregate(emu, meter, sub["customer"], start, end) if meter and end > start else 0
            if not preview and end > start:
                billed[item["id"]] = end
            line = build_line(
                invoice_id=invoice_id, amount=price_amount(emu, price, quantity), currency=sub["currency"],
                description=item_description(price, quantity, name), period=(start, max(end, start)),
                quantity=int(quantity), quantity_decimal=str(quantity), price=price, subscription_id=sub["id"],
                parent=item_parent(sub, item))
        else:
            line = build_line(
                invoice_id=invoice_id, amount=price_amount(emu, price, item["quantity"]),
                currency=sub["currency"], description=item_description(price, item["quantity"], name),
                period=(period_start, period_end), quantity=item["quantity"],
                quantity_decimal=str(item["quantity"]), price=price, subscription_id=sub["id"],
                parent=item_parent(sub, item))
        rates = tax_rates.rate_ids(item.get("tax_rates"))
        if rates:
            emu.store.table(LINE_TAX_RATES)[line["id"]] = rates
        lines.append(line)
    return lines


def item_parent(sub: dict, item: dict) -> dict:
    return {"type": "subscription_item_details", "invoice_item_details": None,
            "subscription_item_details": {"invoice_item": None, "proration": False,
                                          "proration_details": {"credited_items": None},
                                          "subscription": sub["id"], "subscription_item": item["id"]}}


def invoice_item_line(emu, ii: dict, invoice_id: str) -> dict:
    price_id = ((ii.get("pricing") or {}).get("price_details") or {}).get("price")
    price = emu.store.objects.get(price_id) if price_id else None
    subscription_id = ((ii.get("parent") or {}).get("subscription_details") or {}).get("subscription")
    line = build_line(
        invoice_id=invoice_id, amount=ii["amount"], currency=ii["currency"], description=ii["description"],
        period=(ii["period"]["start"], ii["period"]["end"]), quantity=ii["quantity"],
        quantity_decimal=ii.get("quantity_decimal"), price=price, discountable=ii["discountable"],
        discounts=ii["discounts"], subscription_id=subscription_id, metadata=ii["metadata"],
        parent={"type": "invoice_item_details", "subscription_item_details": None,
                "invoice_item_details": {"invoice_item": ii["id"], "proration": ii["proration"],
                                         "proration_details": {"credited_items": None},
                                         "subscription": subscription_id}})
    if price is None:
        line["pricing"]["unit_amount_decimal"] = (ii.get("pricing") or {}).get("unit_amount_decimal")
    if ii["tax_rates"]:
        emu.store.table(LINE_TAX_RATES)[line["id"]] = [r["id"] for r in ii["tax_rates"]]
    return line


def pending_items(emu, customer_id: str, currency: str, subscription_id: str | None) -> list[dict]:
    """The customer's invoice items not yet on an invoice (for a subscription invoice: those of that
    subscription and those of none)."""
    found = []
    for ii in emu.store.all("invoiceitem"):
        sub_of = ((ii.get("parent") or {}).get("subscription_details") or {}).get("subscription")
        on_invoice = ii["invoice"] and ii["invoice"] in emu.store.objects  # a removed draft frees its items
        if (ii.get("deleted") or on_invoice or ii["customer"] != customer_id or ii["currency"] != currency
                or (sub_of and sub_of != subscription_id)):
            continue
        found.append(ii)
    return found


def attach_items(emu, invoice: dict, items: list[dict], preview: bool = False):
    for ii in items:
        invoice["lines"]["data"].append(invoice_item_line(emu, ii, invoice["id"]))
        if not preview:
            ii["invoice"] = invoice["id"]


def subscription_discounts(emu, sub: dict, at: int) -> list[str]:
    """The discounts a subscription's invoice carries: the subscription's own, else the customer's."""
    own = [d for d in sub.get("discounts") or [] if isinstance(d, str)]
    if not own:
        customer_discount = coupons.customer_discount(emu, sub["customer"])
        own = [customer_discount["id"]] if customer_discount else []
    return [d for d in own if d in emu.store.objects and coupons.discount_active(emu, emu.store.objects[d], at)]


def retire_used_discounts(emu, sub: dict, used: list[str]):
    """Count the invoice against its discounts; one that has run out (a `once` discount after its invoice, a
    `repeating` one after its months) leaves the subscription, as Stripe consumes it (`customer.discount.deleted`,
    and the subscription event that follows shows it gone), or the customer (`customer.discount.deleted`)."""
    coupons.count_use(emu, used)
    later = emu.now() + 1
    kept = [d for d in sub.get("discounts") or []
            if not isinstance(d, str) or d not in emu.store.objects
            or coupons.discount_active(emu, emu.store.objects[d], later)]
    if sub.get("discounts") and kept != sub["discounts"]:
        coupons.announce_discounts(emu, sub["discounts"], kept)
        sub["discounts"] = kept
    discount = coupons.customer_discount(emu, sub["customer"])
    if discount and not coupons.discount_active(emu, discount, later):
        coupons.remove_customer_discount(emu, sub["customer"])


def create_invoice(emu, sub: dict, billing_reason: str, period_start: int, period_end: int,
                   preview: bool = False) -> dict:
    """A subscription's draft invoice (stored unless `preview`): its items' lines, the pending invoice
    items, the subscription's (or customer's) discounts, its tax rates; totals computed."""
    customer = emu.store.objects[sub["customer"]]
    invoice = build_invoice(emu, customer=customer, billing_reason=billing_reason, currency=sub["currency"],
                            sub=sub, invoice_id=("upcoming_" + shapes.new_id("in_")) if preview else None)
    invoice["lines"]["data"] = subscription_lines(emu, sub, invoice["id"], billing_reason, period_start,
                                                  period_end, preview)
    attach_items(emu, invoice, pending_items(emu, customer["id"], sub["currency"], sub["id"]), preview)
    invoice["default_tax_rates"] = copy.deepcopy(sub.get("default_tax_rates") or [])
    invoice["default_payment_method"] = None
    invoice["collection_method"] = sub.get("collection_method") or "charge_automatically"
    if invoice["collection_method"] == "send_invoice":
        invoice["due_date"] = emu.now() + (sub.get("days_until_due") or 30) * DAY
    invoice["discounts"] = subscription_discounts(emu, sub, emu.now())
    if billing_reason == "subscription_create":
        invoice["period_start"] = invoice["period_end"] = emu.now()
    else:  # the period that just ended, whose usage and prorations the invoice carries
        invoice["period_start"], invoice["period_end"] = sub_period_before(sub, period_start), period_start
    recompute(emu, invoice)
    if preview:
        forget_line_rates(emu, invoice)
        return invoice
    retire_used_discounts(emu, sub, invoice["discounts"])
    return emu.store.put(invoice)


def forget_line_rates(emu, invoice: dict):
    """A preview's lines are not kept: neither are their tax rates."""
    for line in invoice["lines"]["data"]:
        emu.store.table(LINE_TAX_RATES).pop(line["id"], None)


def sub_period_before(sub: dict, period_start: int) -> int:
    price = sub["items"]["data"][0]["price"]
    recurring = price.get("recurring") or {"interval": "month", "interval_count": 1}
    return shapes.add_interval(period_start, recurring["interval"], -recurring["interval_count"])


# -- totals ----------------------------------------------------------------------------------------
def line_rates(emu, invoice: dict, line: dict) -> list[str]:
    return emu.store.table(LINE_TAX_RATES).get(line["id"]) or tax_rates.rate_ids(invoice.get("default_tax_rates"))


def recompute(emu, invoice: dict):
    """Discounts before tax: each line's discounts (percent off rounded per line, amount off split in
    proportion), then tax on what is left (exclusive added on top, inclusive taken out of the amount);
    the invoice's totals are the sums. Integer minor units throughout."""
    lines = invoice["lines"]["data"]
    coupons.discount_lines(emu, lines, invoice["discounts"], invoice["currency"],
                           {line["id"]: line["discounts"] for line in lines if line["discounts"]})
    subtotal = sum(line["amount"] for line in lines)
    discount_totals: dict[str, int] = {}
    tax_totals: dict[str, dict] = {}
    exclusive = inclusive = inclusive_before_invoice_discounts = 0
    for line in lines:
        rates = line_rates(emu, invoice, line)
        discounted = line["amount"] - sum(d["amount"] for d in line["discount_amounts"])
        line["taxes"] = tax_rates.line_taxes(emu, discounted, rates)
        line_level = set(line["discounts"])
        before = line["amount"] - sum(d["amount"] for d in line["discount_amounts"] if d["discount"] in line_level)
        inclusive_before_invoice_discounts += sum(
            t["amount"] for t in tax_rates.line_taxes(emu, before, rates) if t["tax_behavior"] == "inclusive")
        for d in line["discount_amounts"]:
            discount_totals[d["discount"]] = discount_totals.get(d["discount"], 0) + d["amount"]
        for tax in line["taxes"]:
            if tax["tax_behavior"] == "exclusive":
                exclusive += tax["amount"]
            else:
                inclusive += tax["amount"]
            rate_id = tax["tax_rate_details"]["tax_rate"]
            total = tax_totals.setdefault(rate_id, {**copy.deepcopy(tax), "amount": 0, "taxable_amount": 0})
            total["amount"] += tax["amount"]
            total["taxable_amount"] += tax["taxable_amount"]
    discount = sum(discount_totals.values())
    total = subtotal - discount + exclusive
    invoice.update(
        subtotal=subtotal, subtotal_excluding_tax=subtotal - inclusive_before_invoice_discounts,
        total=total, total_excluding_tax=total - exclusive - inclusive,
        total_discount_amounts=[{"amount": a, "discount": d} for d, a in discount_totals.items()],
        total_taxes=list(tax_totals.values()),
        amount_due=max(total, 0), amount_remaining=max(total, 0) - invoice["amount_paid"])
    invoice["lines"]["total_count"] = len(lines)
    starts = [line["period"]["start"] for line in lines]
    if invoice["billing_reason"] == "manual" and starts:
        invoice["period_start"] = min(starts)
        invoice["period_end"] = max(line["period"]["end"] for line in lines)


def summary_rows(emu, invoice: dict) -> list[tuple[str, int]]:
    """What the hosted page and the PDF show under the lines: subtotal, each discount, each tax, total."""
    rows = [("Subtotal", invoice["subtotal"])]
    for part in invoice["total_discount_amounts"]:
        coupon = emu.store.objects.get((emu.store.objects.get(part["discount"]) or {}).get("source", {}).get("coupon"))
        name = (coupon or {}).get("name") or (
            f"{coupon['percent_off']}% off" if coupon and coupon["percent_off"] is not None else "Discount")
        rows.append((name, -part["amount"]))
    for tax in invoice["total_taxes"]:
        rate = emu.store.objects.get(tax["tax_rate_details"]["tax_rate"]) or {}
        label = f"{rate.get('display_name', 'Tax')} ({rate.get('percentage')}%"
        label += " included)" if tax["tax_behavior"] == "inclusive" else ")"
        rows.append((label, tax["amount"]))
    rows.append(("Total", invoice["total"]))
    return rows


# -- state changes ---------------------------------------------------------------------------------
def finalize_invoice(emu, invoice: dict, schedule_attempt: bool = False):
    """draft -> open (number, hosted URLs); a zero invoice is paid at once. With `schedule_attempt`
    (API finalize of an auto-advancing invoice) the payment is attempted an hour later by the clock."""
    customer = emu.store.objects[invoice["customer"]]
    number = f"{customer['invoice_prefix']}-{customer['next_invoice_sequence']:04d}"
    customer["next_invoice_sequence"] += 1
    now = emu.now()
    invoice.update(status="open", number=number, effective_at=now,
                   hosted_invoice_url=f"{emu.base_url}/invoices/{invoice['id']}",
                   invoice_pdf=f"{emu.base_url}/invoices/{invoice['id']}/pdf",
                   automatically_finalizes_at=None)
    if invoice["collection_method"] == "send_invoice" and invoice["due_date"] is None:
        invoice["due_date"] = now + 30 * DAY
    invoice["status_transitions"]["finalized_at"] = now
    if invoice["billing_reason"] == "manual":  # subscription invoices count theirs when created
        coupons.count_use(emu, invoice["discounts"])
        own = coupons.customer_discount(emu, invoice["customer"])
        if own and own["id"] in invoice["discounts"] and not coupons.discount_active(emu, own, now + 1):
            coupons.remove_customer_discount(emu, invoice["customer"])
    for line in invoice["lines"]["data"]:
        ii_id = ((line["parent"] or {}).get("invoice_item_details") or {}).get("invoice_item")
        if ii_id and ii_id in emu.store.objects:
            emu.store.objects[ii_id]["invoice"] = invoice["id"]
    if schedule_attempt and invoice["auto_advance"] and invoice["collection_method"] == "charge_automatically" \
            and invoice["amount_due"] > 0:
        invoice["next_payment_attempt"] = now + AUTO_FINALIZE_SECONDS
    emu.emit("invoice.finalized", invoice)
    if invoice["amount_due"] == 0:
        mark_invoice_paid(emu, invoice, attempted=False)


def mark_invoice_paid(emu, invoice: dict, attempted: bool = True):
    now = emu.now()
    invoice.update(status="paid", attempted=attempted or invoice["attempted"],
                   attempt_count=invoice["attempt_count"] + (1 if attempted else 0),
                   amount_paid=invoice["amount_due"], amount_remaining=0, next_payment_attempt=None)
    invoice["status_transitions"]["paid_at"] = now
    emu.emit("invoice.paid", invoice)
    emu.emit("invoice.payment_succeeded", invoice)


def charge(emu, invoice: dict, pm_id: str | None) -> tuple[bool, str | None]:
    """Charge what is due through the payments family (one PaymentIntent per invoice, a Charge per
    attempt, their events): (paid, error code)."""
    ok, code, _pi = payment_intents.charge_invoice(emu, invoice, pm_id)
    return ok, code


def attempt_invoice(emu, invoice: dict, pm_id: str | None = None) -> tuple[bool, str | None]:
    """Charge the invoice; on success mark it paid and bring its subscription back to active."""
    sub = emu.store.objects.get(invoice["subscription"]) if invoice["subscription"] else None
    ok, decline_code = charge(emu, invoice, pm_id)
    if decline_code == "authentication_required":
        emu.emit("invoice.payment_action_required", invoice)
    if ok:
        mark_invoice_paid(emu, invoice)
        if sub:
            subscriptions.invoice_paid(emu, invoice)
    return ok, decline_code


def record_failure(emu, invoice: dict):
    now = emu.now()
    first = emu.store.table(FIRST_FAILURE).setdefault(invoice["id"], now)
    invoice["attempted"] = True
    invoice["attempt_count"] += 1
    retries_done = invoice["attempt_count"] - 1
    if invoice["subscription"] and retries_done < len(emu.retry_days):
        invoice["next_payment_attempt"] = first + emu.retry_days[retries_done] * DAY
    else:
        invoice["next_payment_attempt"] = None
    emu.emit("invoice.payment_failed", invoice)


def retry_invoice(emu, invoice_id: str):
    invoice = emu.store.objects[invoice_id]
    ok, _ = attempt_invoice(emu, invoice)
    if not ok:
        record_failure(emu, invoice)
        if invoice["next_payment_attempt"] is None and invoice["subscription"]:
            exhaust_retries(emu, invoice)


def exhaust_retries(emu, invoice: dict):
    """All retries failed: mark the invoice uncollectible and cancel its subscription."""
    mark_uncollectible(emu, invoice)
    sub = emu.store.objects.get(invoice["subscription"]) if invoice["subscription"] else None
    if sub:
        subscriptions.retries_exhausted(emu, sub)


def auto_finalize(emu, invoice_id: str):
    invoice = emu.store.objects[invoice_id]
    finalize_invoice(emu, invoice)
    if invoice["status"] == "open" and invoice["collection_method"] == "charge_automatically":
        ok, _ = attempt_invoice(emu, invoice)
        if not ok:
            record_failure(emu, invoice)


# -- the API ---------------------------------------------------------------------------------------
def invoice_create(emu, params):
    allow(params, CREATE_FIELDS)
    required(params, "customer")
    customer = emu.store.get("customer", params["customer"], "customer")
    sub = emu.store.get("subscription", params["subscription"], "subscription") if params.get("subscription") else None
    if sub and sub["customer"] != customer["id"]:
        raise StripeError(400, "The subscription does not belong to this customer.", param="subscription")
    behavior = params.get("pending_invoice_items_behavior") or "exclude"
    if behavior not in ("exclude", "include"):
        raise StripeError(400, "Invalid pending_invoice_items_behavior: must be one of exclude or include",
                          param="pending_invoice_items_behavior")
    currency = (params.get("currency") or (sub or {}).get("currency") or customer.get("currency") or "usd").lower()
    invoice = build_invoice(emu, customer=customer, billing_reason="manual", currency=currency, sub=sub)
    invoice["auto_advance"] = False
    apply_update(emu, invoice, {k: v for k, v in params.items()
                                if k not in ("customer", "subscription", "currency", "pending_invoice_items_behavior")},
                 creating=True)
    if "discounts" not in params:  # Stripe applies the customer's discount unless the invoice names its own
        own = coupons.customer_discount(emu, customer["id"])
        if own and coupons.discount_active(emu, own, emu.now()):
            invoice["discounts"] = [own["id"]]
    if behavior == "include":
        attach_items(emu, invoice, pending_items(emu, customer["id"], currency, sub["id"] if sub else None))
    if not invoice["auto_advance"]:
        invoice["automatically_finalizes_at"] = None
    recompute(emu, invoice)
    emu.store.put(invoice)
    emu.emit("invoice.created", invoice)
    return invoice


def apply_update(emu, invoice: dict, params: dict, creating: bool = False) -> dict:
    """Set the updatable fields; answers previous attributes of what changed."""
    previous = {}

    def put(key, value):
        if invoice.get(key) != value:
            previous[key] = copy.deepcopy(invoice.get(key))
            invoice[key] = value
    if invoice["status"] != "draft":
        allowed = {"metadata", "auto_advance", "description", "footer"}
        extra = set(params) - allowed
        if extra:
            raise StripeError(400, f"Finalized invoices can't be updated in this way: {sorted(extra)[0]} can only "
                                   "be changed on a draft invoice.", param=sorted(extra)[0])
    if "metadata" in params:
        put("metadata", merge_metadata(invoice["metadata"], params["metadata"]))
    for key in ("description", "footer", "statement_descriptor"):
        if key in params:
            put(key, params[key] or None)
    if "auto_advance" in params:
        put("auto_advance", as_bool(params["auto_advance"], "auto_advance"))
        if invoice["status"] == "draft":
            invoice["automatically_finalizes_at"] = (invoice["created"] + AUTO_FINALIZE_SECONDS
                                                     if invoice["auto_advance"] else None)
    if "collection_method" in params:
        if params["collection_method"] not in ("charge_automatically", "send_invoice"):
            raise StripeError(400, "Invalid collection_method: must be one of charge_automatically or "
                                   "send_invoice", param="collection_method")
        put("collection_method", params["collection_method"])
    if params.get("days_until_due") not in (None, ""):
        days = as_int(params["days_until_due"], "days_until_due")
        if invoice["collection_method"] != "send_invoice":
            raise StripeError(400, "days_until_due can only be set when collection_method is send_invoice.",
                              param="days_until_due")
        put("due_date", emu.now() + days * DAY)
    if params.get("due_date") not in (None, ""):
        if invoice["collection_method"] != "send_invoice":
            raise StripeError(400, "due_date can only be set when collection_method is send_invoice.",
                              param="due_date")
        put("due_date", as_int(params["due_date"], "due_date"))
    if "default_payment_method" in params:
        pm_id = params["default_payment_method"] or None
        if pm_id:
            pm = emu.store.get("payment_method", pm_id, "default_payment_method")
            if pm["customer"] != invoice["customer"]:
                raise StripeError(400, "The payment method must be attached to the invoice's customer.",
                                  param="default_payment_method")
        put("default_payment_method", pm_id)
    if "default_tax_rates" in params:
        put("default_tax_rates", tax_rates.rate_objects(emu, params["default_tax_rates"], "default_tax_rates"))
    if "discounts" in params:
        sources = coupons.resolve_discounts(emu, {"discounts": params["discounts"]},
                                            customer_id=invoice["customer"], currency=invoice["currency"])
        put("discounts", coupons.create_discounts(emu, sources, customer=invoice["customer"],
                                                  invoice=invoice["id"]))
    return previous


def invoice_update(emu, params, id):
    allow(params, UPDATE_FIELDS)
    invoice = emu.store.get("invoice", id)
    if invoice["status"] in ("paid", "void") and set(params) - {"metadata"}:
        raise StripeError(400, f"You can only update the metadata of a {invoice['status']} invoice.")
    before = copy.deepcopy(invoice)
    try:
        previous = apply_update(emu, invoice, params)
    except StripeError:  # a refused update changes nothing
        invoice.clear()
        invoice.update(before)
        raise
    if previous:
        recompute(emu, invoice)
        emu.emit("invoice.updated", invoice, previous)
    return invoice


def invoice_finalize(emu, params, id):
    allow(params, {"auto_advance"})
    invoice = emu.store.get("invoice", id)
    if invoice["status"] != "draft":
        raise StripeError(400, f"This invoice is already finalized, you can't re-finalize a non-draft invoice.",
                          code="invoice_not_editable")
    if "auto_advance" in params:
        invoice["auto_advance"] = as_bool(params["auto_advance"], "auto_advance")
    recompute(emu, invoice)
    finalize_invoice(emu, invoice, schedule_attempt=True)
    return invoice


def invoice_pay(emu, params, id):
    allow(params, {"payment_method", "paid_out_of_band", "off_session", "forgive", "source", "mandate"})
    invoice = emu.store.get("invoice", id)
    if invoice["status"] == "paid":
        raise StripeError(400, "Invoice is already paid", code="invoice_already_paid")
    if invoice["status"] == "draft":
        recompute(emu, invoice)
        finalize_invoice(emu, invoice)
        if invoice["status"] == "paid":
            return invoice
    if invoice["status"] not in ("open", "uncollectible"):
        raise StripeError(400, f"You can only pay an invoice that is open or uncollectible; this one is "
                               f"{invoice['status']}.")
    if as_bool(params.get("paid_out_of_band", "false"), "paid_out_of_band"):
        mark_invoice_paid(emu, invoice, attempted=False)
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
        if decline_code == "authentication_required":
            raise StripeError(402, "This payment requires additional user action before it can be completed "
                                   "successfully.", type="card_error", code="invoice_payment_intent_requires_action")
        message = DECLINE_MESSAGES.get(decline_code, "Your card was declined.")
        raise StripeError(402, message, type="card_error", code="card_declined", decline_code=decline_code)
    return invoice


def void_invoice(emu, invoice: dict):
    invoice.update(status="void", next_payment_attempt=None, amount_remaining=0, auto_advance=False)
    invoice["status_transitions"]["voided_at"] = emu.now()
    payment_intents.invoice_voided(emu, invoice)
    emu.emit("invoice.voided", invoice)


def mark_uncollectible(emu, invoice: dict):
    invoice.update(status="uncollectible", next_payment_attempt=None)
    invoice["status_transitions"]["marked_uncollectible_at"] = emu.now()
    emu.emit("invoice.marked_uncollectible", invoice)


def invoice_void(emu, params, id):
    allow(params, set())
    invoice = emu.store.get("invoice", id)
    if invoice["status"] not in ("open", "uncollectible"):
        raise StripeError(400, f"You can only void an open or uncollectible invoice; this one is "
                               f"{invoice['status']}.")
    void_invoice(emu, invoice)
    return invoice


def invoice_mark_uncollectible(emu, params, id):
    allow(params, set())
    invoice = emu.store.get("invoice", id)
    if invoice["status"] != "open":
        raise StripeError(400, f"You can only mark an open invoice as uncollectible; this one is "
                               f"{invoice['status']}.")
    mark_uncollectible(emu, invoice)
    return invoice


def invoice_send(emu, params, id):
    allow(params, set())
    invoice = emu.store.get("invoice", id)
    if invoice["status"] != "open":
        raise StripeError(400, "You can only send an open invoice." if invoice["status"] != "draft" else
                          "You can't send a draft invoice. Finalize it first.")
    if invoice["collection_method"] != "send_invoice":
        raise StripeError(400, "You can only manually send an invoice whose collection_method is send_invoice.")
    emu.emit("invoice.sent", invoice)
    return invoice


def invoice_delete(emu, params, id):
    invoice = emu.store.get("invoice", id)
    if invoice["status"] != "draft":
        raise StripeError(400, "You can only delete draft invoices. Void a finalized invoice instead.")
    for ii in emu.store.all("invoiceitem"):
        if ii["invoice"] == id and not ii.get("deleted"):
            ii["invoice"] = None  # back to pending, as Stripe does
    emu.emit("invoice.deleted", invoice)
    invoice["deleted"] = True
    return {"id": id, "object": "invoice", "deleted": True}


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


def preview(emu, params: dict, fields: set[str]) -> dict:
    """The next invoice, not saved: for a subscription its renewal at the period end (usage so far on
    metered items), else the customer's pending invoice items."""
    allow(params, fields)
    if not params.get("customer") and not params.get("subscription"):
        raise StripeError(400, "Missing required param: customer.", code="parameter_missing", param="customer")
    sub = emu.store.get("subscription", params["subscription"], "subscription") if params.get("subscription") else None
    customer = emu.store.get("customer", params.get("customer") or sub["customer"], "customer")
    if sub is None:
        sub = next((s for s in emu.store.newest_first("subscription")
                    if s["customer"] == customer["id"] and s["status"] not in ("canceled", "incomplete_expired")), None)
    if sub is not None:
        if sub["customer"] != customer["id"]:
            raise StripeError(400, "The subscription does not belong to this customer.", param="subscription")
        if sub["status"] == "canceled":
            raise StripeError(400, "No upcoming invoices for customer: the subscription is canceled.",
                              code="invoice_upcoming_none")
        start = sub["current_period_end"]
        price = sub["items"]["data"][0]["price"]["recurring"]
        end = shapes.add_interval(start, price["interval"], price["interval_count"])
        invoice = create_invoice(emu, sub, "upcoming", start, end, preview=True)
        invoice["billing_reason"] = "subscription_cycle"
    else:
        currency = (customer.get("currency") or "usd")
        items = pending_items(emu, customer["id"], currency, None)
        if not items:
            raise StripeError(404, f"No upcoming invoices for customer: {customer['id']}",
                              code="invoice_upcoming_none")
        invoice = build_invoice(emu, customer=customer, billing_reason="manual", currency=currency,
                                invoice_id="upcoming_" + shapes.new_id("in_"))
        attach_items(emu, invoice, items, preview=True)
        recompute(emu, invoice)
        forget_line_rates(emu, invoice)
    invoice["automatically_finalizes_at"] = None
    return invoice


def invoice_upcoming(emu, params):
    return preview(emu, params, {"customer", "subscription"})


def invoice_create_preview(emu, params):
    return preview(emu, params, {"customer", "subscription"})


def register(api):
    api.add("POST", "/v1/invoices", invoice_create)
    api.add("GET", "/v1/invoices", invoice_list)
    api.add("GET", "/v1/invoices/upcoming", invoice_upcoming)
    api.add("POST", "/v1/invoices/create_preview", invoice_create_preview)
    api.add("GET", "/v1/invoices/{id}", invoice_retrieve)
    api.add("POST", "/v1/invoices/{id}", invoice_update)
    api.add("DELETE", "/v1/invoices/{id}", invoice_delete)
    api.add("GET", "/v1/invoices/{id}/lines", invoice_lines)
    api.add("POST", "/v1/invoices/{id}/finalize", invoice_finalize)
    api.add("POST", "/v1/invoices/{id}/pay", invoice_pay)
    api.add("POST", "/v1/invoices/{id}/void", invoice_void)
    api.add("POST", "/v1/invoices/{id}/mark_uncollectible", invoice_mark_uncollectible)
    api.add("POST", "/v1/invoices/{id}/send", invoice_send)
    api.on_clock(due)


def due(emu, until):
    found = []
    for i in emu.store.all("invoice"):
        if i.get("deleted"):
            continue
        if i["status"] == "open" and i["next_payment_attempt"] and i["next_payment_attempt"] <= until:
            found.append((i["next_payment_attempt"], 1, i["id"], retry_invoice))
        elif (i["status"] == "draft" and i["auto_advance"] and i["automatically_finalizes_at"]
              and i["automatically_finalizes_at"] <= until):
            found.append((i["automatically_finalizes_at"], 1, i["id"], auto_finalize))
    return found
