"""dj-stripe 2.11 processes every event the invoices, invoice items, coupons, promotion codes, discounts,
tax rates and billing meters families emit (Event.process re-reads each object with its own expand)."""
import pytest
import stripe
from djstripe import models as djstripe_models

from tests.sandbox.test_stripe_djstripe import API_KEY, emu, process_events  # noqa: F401 (fixture)

pytestmark = pytest.mark.django_db


def test_djstripe_processes_every_invoice_coupon_tax_and_meter_event(emu):
    """Every event type the invoices, coupons, tax rates and meters families emit goes through dj-stripe's
    Event.process (which re-reads the object, with dj-stripe's own expand values)."""
    api = stripe.StripeClient(API_KEY, base_addresses={"api": emu.url}, max_network_retries=0)
    coupon = api.v1.coupons.create(params={"percent_off": 10, "duration": "forever"})
    api.v1.coupons.update(coupon.id, params={"name": "Ten"})
    promo = api.v1.promotion_codes.create(params={"promotion": {"coupon": coupon.id}, "code": "TEN"})
    api.v1.promotion_codes.update(promo.id, params={"metadata": {"k": "v"}})
    vat = api.v1.tax_rates.create(params={"display_name": "VAT", "percentage": 20, "inclusive": False})
    api.v1.tax_rates.update(vat.id, params={"description": "Standard"})
    cus = api.v1.customers.create(params={"email": "dj@example.com", "payment_method": "pm_card_visa",
                                          "invoice_settings": {"default_payment_method": "pm_card_visa"},
                                          "coupon": coupon.id})
    api.v1.customers.delete_discount(cus.id)
    draft = api.v1.invoices.create(params={"customer": cus.id, "discounts": [{"promotion_code": promo.id}],
                                           "default_tax_rates": [vat.id], "collection_method": "send_invoice",
                                           "days_until_due": 7})
    item = api.v1.invoice_items.create(params={"customer": cus.id, "amount": 1000, "currency": "usd",
                                               "invoice": draft.id})
    api.v1.invoices.update(draft.id, params={"description": "Consulting"})
    api.v1.invoices.finalize_invoice(draft.id)
    api.v1.invoices.send_invoice(draft.id)
    api.v1.invoices.pay(draft.id)
    voided = api.v1.invoices.create(params={"customer": cus.id})
    api.v1.invoice_items.create(params={"customer": cus.id, "amount": 300, "currency": "usd", "invoice": voided.id})
    api.v1.invoices.finalize_invoice(voided.id)
    api.v1.invoices.void_invoice(voided.id)
    lost = api.v1.invoices.create(params={"customer": cus.id})
    api.v1.invoice_items.create(params={"customer": cus.id, "amount": 300, "currency": "usd", "invoice": lost.id})
    api.v1.invoices.finalize_invoice(lost.id)
    api.v1.invoices.mark_uncollectible(lost.id)
    gone = api.v1.invoices.create(params={"customer": cus.id})
    api.v1.invoices.delete(gone.id)
    pending = api.v1.invoice_items.create(params={"customer": cus.id, "amount": 50, "currency": "usd"})
    api.v1.invoice_items.delete(pending.id)
    mtr = api.v1.billing.meters.create(params={"display_name": "Calls", "event_name": "calls",
                                              "default_aggregation": {"formula": "count"}})
    api.v1.billing.meters.update(mtr.id, params={"display_name": "API calls"})
    api.v1.billing.meters.deactivate(mtr.id)
    api.v1.billing.meters.reactivate(mtr.id)
    api.v1.coupons.delete(coupon.id)

    emitted = {e["type"] for e in emu.events}
    assert emitted >= {
        "coupon.created", "coupon.updated", "coupon.deleted", "promotion_code.created", "promotion_code.updated",
        "tax_rate.created", "tax_rate.updated", "customer.discount.created", "customer.discount.deleted",
        "invoice.created", "invoice.updated", "invoice.finalized", "invoice.sent", "invoice.paid",
        "invoice.payment_succeeded", "invoice.voided", "invoice.marked_uncollectible", "invoice.deleted",
        "invoiceitem.created", "invoiceitem.deleted", "billing.meter.created", "billing.meter.updated",
        "billing.meter.deactivated", "billing.meter.reactivated"}
    process_events(emu)
    paid = djstripe_models.Invoice.objects.get(id=draft.id)
    assert paid.status == "paid" and paid.total == 1080
    assert djstripe_models.InvoiceItem.objects.filter(id=item.id).exists()
    assert djstripe_models.Discount.objects.filter(id__in=emu.get(draft.id)["discounts"]).count() == 1
    assert djstripe_models.TaxRate.objects.get(id=vat.id).percentage == 20
    assert djstripe_models.Event.objects.count() == len(emu.events)
