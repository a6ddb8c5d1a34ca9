"""Invoice items: pending charges (or credits) that the customer's next invoice picks up, or lines added
to a draft invoice."""
from __future__ import annotations

import copy
from decimal import Decimal, InvalidOperation

from .. import shapes
from ..errors import StripeError, allow, metadata as merge_metadata, required
from ..params import as_bool, as_int
from ..store import created_filter
from . import coupons, invoices, tax_rates

UNIT = "invoiceitem.unit"  # store table: item id -> unit amount (decimal string) a quantity change reprices

UPDATE_FIELDS = {"amount", "description", "discountable", "discounts", "metadata", "period", "pricing",
                 "price_data", "quantity", "quantity_decimal", "tax_rates", "unit_amount_decimal", "tax_behavior",
                 "tax_code"}
CREATE_FIELDS = UPDATE_FIELDS | {"customer", "currency", "invoice", "subscription"}


def draft_invoice(emu, invoice_id: str, param: str = "invoice") -> dict:
    invoice = emu.store.get("invoice", invoice_id, param)
    if invoice["status"] != "draft":
        raise StripeError(400, f"Invoice {invoice_id} is no longer editable: invoice items can only be added to "
                               "or changed on draft invoices.", code="invoice_not_editable", param=param)
    return invoice


def amount_fields(emu, params: dict, ii: dict):
    """Amount, quantity and pricing from `amount`, `pricing[price]`, `price_data` or
    `unit_amount_decimal` (with `quantity`), as Stripe accepts one of them."""
    ways = [k for k in ("amount", "pricing", "price_data", "unit_amount_decimal") if params.get(k) not in (None, "")]
    if len(ways) > 1:
        raise StripeError(400, f"You may only specify one of these parameters: {', '.join(ways)}.", param=ways[1])
    quantity = (as_int(params["quantity"], "quantity") if params.get("quantity") not in (None, "")
                else ii.get("quantity", 1))
    if quantity < 0:
        raise StripeError(400, "Invalid non-negative integer", param="quantity")
    if not ways:
        if "quantity" in params and ii.get("_unit") is not None:
            unit = Decimal(ii["_unit"])
        else:
            return
    elif ways[0] == "amount":
        amount = as_int(params["amount"], "amount")
        if "quantity" in params and quantity != 1:
            raise StripeError(400, "When amount is given, quantity must be 1 or omitted; use unit_amount_decimal.",
                              param="quantity")
        ii.update(amount=amount, quantity=1, quantity_decimal="1", _unit=str(amount))
        ii["pricing"] = {"type": "price_details", "unit_amount_decimal": str(amount), "price_details": None}
        return
    elif ways[0] == "pricing":
        pricing = params["pricing"]
        if not isinstance(pricing, dict) or set(pricing) - {"price"} or not pricing.get("price"):
            raise StripeError(400, "Invalid pricing: give pricing[price].", param="pricing[price]")
        price = emu.store.get("price", pricing["price"], "pricing[price]")
        if price["currency"] != ii["currency"]:
            raise StripeError(400, "The price's currency must match the invoice item's.", param="pricing[price]")
        if (price.get("recurring") or {}).get("usage_type") == "metered":
            raise StripeError(400, "Metered prices cannot be used on invoice items.", param="pricing[price]")
        ii["pricing"] = {"type": "price_details", "unit_amount_decimal": price["unit_amount_decimal"],
                         "price_details": {"price": price["id"], "product": price["product"]}}
        ii.update(amount=invoices.price_amount(emu, price, quantity), quantity=quantity,
                  quantity_decimal=str(quantity), _unit=price["unit_amount_decimal"])
        return
    elif ways[0] == "price_data":
        data = params["price_data"]
        if not isinstance(data, dict) or not data.get("product") or \
                (data.get("unit_amount") in (None, "") and data.get("unit_amount_decimal") in (None, "")):
            raise StripeError(400, "price_data needs product and unit_amount (or unit_amount_decimal).",
                              param="price_data")
        allow(data, {"currency", "product", "unit_amount", "unit_amount_decimal", "tax_behavior"})
        emu.store.get("product", data["product"], "price_data[product]")
        unit = parse_decimal(data.get("unit_amount") if data.get("unit_amount") not in (None, "")
                             else data["unit_amount_decimal"], "price_data[unit_amount]")
        ii["pricing"] = {"type": "price_details", "unit_amount_decimal": str(unit), "price_details": None}
    else:
        unit = parse_decimal(params["unit_amount_decimal"], "unit_amount_decimal")
        ii["pricing"] = {"type": "price_details", "unit_amount_decimal": str(unit), "price_details": None}
    ii.update(amount=tax_rates.round_half_up(unit * quantity), quantity=quantity, quantity_decimal=str(quantity),
              _unit=str(unit))


def parse_decimal(raw, param: str) -> Decimal:
    try:
        value = Decimal(str(raw))
    except InvalidOperation:
        raise StripeError(400, f"Invalid decimal: {raw}", param=param) from None
    if not value.is_finite():
        raise StripeError(400, f"Invalid decimal: {raw}", param=param)
    return value


def period_field(value, now: int) -> dict:
    if value in (None, ""):
        return {"start": now, "end": now}
    if not isinstance(value, dict) or set(value) - {"start", "end"} or "start" not in value or "end" not in value:
        raise StripeError(400, "Invalid period: give period[start] and period[end].", param="period")
    start, end = as_int(value["start"], "period[start]"), as_int(value["end"], "period[end]")
    if end < start:
        raise StripeError(400, "period[end] must be on or after period[start].", param="period[end]")
    return {"start": start, "end": end}


def invoiceitem_create(emu, params):
    allow(params, CREATE_FIELDS)
    required(params, "customer")
    customer = emu.store.get("customer", params["customer"], "customer")
    invoice = draft_invoice(emu, params["invoice"]) if params.get("invoice") else None
    sub = emu.store.get("subscription", params["subscription"], "subscription") if params.get("subscription") else None
    if invoice and invoice["customer"] != customer["id"]:
        raise StripeError(400, "The invoice belongs to another customer.", param="invoice")
    price_currency = None
    if isinstance(params.get("pricing"), dict) and params["pricing"].get("price"):
        price_currency = emu.store.get("price", params["pricing"]["price"], "pricing[price]")["currency"]
    currency = ((params.get("currency") or "").lower() or (invoice or {}).get("currency")
                or (sub or {}).get("currency") or price_currency or customer.get("currency"))
    if not currency:
        raise StripeError(400, "Missing required param: currency.", code="parameter_missing", param="currency")
    if invoice and invoice["currency"] != currency:
        raise StripeError(400, "The invoice item's currency must match the invoice's.", param="currency")
    if not any(params.get(k) not in (None, "") for k in ("amount", "pricing", "price_data", "unit_amount_decimal")):
        raise StripeError(400, "You must specify one of amount, pricing[price], price_data or unit_amount_decimal.",
                          code="parameter_missing", param="amount")
    now = emu.now()
    ii = shapes.example("invoiceitem")
    ii.update(id=shapes.new_id("ii_"), customer=customer["id"], currency=currency, date=now, livemode=False,
              description=params.get("description") or None, invoice=None, proration=False,
              discountable=as_bool(params.get("discountable", "true"), "discountable"), discounts=[],
              metadata=merge_metadata({}, params.get("metadata")), period=period_field(params.get("period"), now),
              tax_rates=[], test_clock=customer.get("test_clock"), customer_account=None, quantity=1,
              parent=({"type": "subscription_details", "subscription_details": {"subscription": sub["id"]}}
                      if sub else None))
    amount_fields(emu, params, ii)
    set_tax_and_discounts(emu, ii, params)
    emu.store.table(UNIT)[ii["id"]] = ii.pop("_unit", None)
    ii["net_amount"] = ii["amount"]
    emu.store.put(ii)
    if invoice:
        add_to_invoice(emu, ii, invoice)
    emu.emit("invoiceitem.created", ii)
    return ii


def set_tax_and_discounts(emu, ii: dict, params: dict):
    if "tax_rates" in params:
        ids = tax_rates.resolve_tax_rates(emu, params["tax_rates"], "tax_rates")
        ii["tax_rates"] = [emu.store.objects[i] for i in ids]
    if "discounts" in params:
        sources = coupons.resolve_discounts(emu, {"discounts": params["discounts"]}, customer_id=ii["customer"],
                                            currency=ii["currency"])
        if sources and not ii["discountable"]:
            raise StripeError(400, "discounts cannot be set on an invoice item that is not discountable.",
                              param="discounts")
        ii["discounts"] = coupons.create_discounts(emu, sources, customer=ii["customer"], invoice_item=ii["id"])


def add_to_invoice(emu, ii: dict, invoice: dict):
    ii["invoice"] = invoice["id"]
    invoice["lines"]["data"].append(invoices.invoice_item_line(emu, ii, invoice["id"]))
    invoices.recompute(emu, invoice)


def refresh_invoice_line(emu, ii: dict):
    invoice = emu.store.objects.get(ii["invoice"]) if ii["invoice"] else None
    if not invoice:
        return
    lines = invoice["lines"]["data"]
    for index, line in enumerate(lines):
        if ((line["parent"] or {}).get("invoice_item_details") or {}).get("invoice_item") == ii["id"]:
            emu.store.table(invoices.LINE_TAX_RATES).pop(line["id"], None)
            lines[index] = invoices.invoice_item_line(emu, ii, invoice["id"])
    invoices.recompute(emu, invoice)


def invoiceitem_update(emu, params, id):
    allow(params, UPDATE_FIELDS)
    ii = emu.store.get("invoiceitem", id)
    if ii["invoice"]:
        draft_invoice(emu, ii["invoice"], "id")
    before = copy.deepcopy(ii)
    try:
        ii["_unit"] = emu.store.table(UNIT).get(ii["id"])
        amount_fields(emu, params, ii)
        if "description" in params:
            ii["description"] = params["description"] or None
        if "discountable" in params:
            ii["discountable"] = as_bool(params["discountable"], "discountable")
        if "metadata" in params:
            ii["metadata"] = merge_metadata(ii["metadata"], params["metadata"])
        if "period" in params:
            ii["period"] = period_field(params["period"], emu.now())
        set_tax_and_discounts(emu, ii, params)
    except StripeError:  # a refused update changes nothing
        ii.clear()
        ii.update(before)
        raise
    emu.store.table(UNIT)[ii["id"]] = ii.pop("_unit", None)
    ii["net_amount"] = ii["amount"]
    refresh_invoice_line(emu, ii)
    return ii  # Stripe emits no event for an invoice item update


def invoiceitem_delete(emu, params, id):
    ii = emu.store.get("invoiceitem", id)
    invoice = emu.store.objects.get(ii["invoice"]) if ii["invoice"] else None
    if invoice is not None:
        draft_invoice(emu, invoice["id"], "id")
        invoice["lines"]["data"] = [
            line for line in invoice["lines"]["data"]
            if ((line["parent"] or {}).get("invoice_item_details") or {}).get("invoice_item") != id]
        invoices.recompute(emu, invoice)
    emu.emit("invoiceitem.deleted", ii)
    ii["deleted"] = True
    return {"id": id, "object": "invoiceitem", "deleted": True}


def invoiceitem_retrieve(emu, params, id):
    return emu.store.get("invoiceitem", id)


def invoiceitem_list(emu, params):
    items = emu.store.newest_first("invoiceitem")
    for key in ("customer", "invoice"):
        if key in params:
            value = params.pop(key)
            items = [i for i in items if i[key] == value]
    if "pending" in params:
        pending = as_bool(params.pop("pending"), "pending")
        items = [i for i in items if (i["invoice"] is None) == pending]
    kept = {i["id"] for i in created_filter([{"id": i["id"], "created": i["date"]} for i in items],
                                            params.get("created"))}
    return emu.store.page([i for i in items if i["id"] in kept], params, "/v1/invoiceitems")


def create_proration_item(emu, *, customer_id, subscription_id, amount, currency, description, price, quantity,
                          subscription_item, period_start, period_end) -> dict:
    """The invoice item a subscription change makes for a proration (a credit when `amount` < 0)."""
    customer = emu.store.objects[customer_id]
    ii = shapes.example("invoiceitem")
    ii.update(id=shapes.new_id("ii_"), amount=amount, currency=currency, customer=customer_id, date=emu.now(),
              description=description, discountable=False, discounts=[], invoice=None, livemode=False,
              metadata={}, period={"start": period_start, "end": period_end}, proration=True, quantity=quantity,
              tax_rates=[], test_clock=customer.get("test_clock"), net_amount=amount, customer_account=None,
              quantity_decimal=str(quantity))
    ii["parent"] = {"type": "subscription_details",
                    "subscription_details": {"subscription": subscription_id, "subscription_item": subscription_item}}
    ii["pricing"] = {"type": "price_details", "unit_amount_decimal": price.get("unit_amount_decimal"),
                     "price_details": {"price": price["id"], "product": price["product"]}}
    emu.store.put(ii)
    emu.emit("invoiceitem.created", ii)
    return ii


def register(api):
    api.add("POST", "/v1/invoiceitems", invoiceitem_create)
    api.add("GET", "/v1/invoiceitems", invoiceitem_list)
    api.add("GET", "/v1/invoiceitems/{id}", invoiceitem_retrieve)
    api.add("POST", "/v1/invoiceitems/{id}", invoiceitem_update)
    api.add("DELETE", "/v1/invoiceitems/{id}", invoiceitem_delete)
