"""The shape check of test_stripe_shapes.py over a scenario of the invoices, invoice items, coupons,
promotion codes, discounts, tax rates and billing meters families: every object they store and every
event they emit has the fields and JSON types of its fixtures3 example."""
import stripe

from sandbox.stripe import StripeEmulator, shapes
from tests.sandbox.test_stripe_shapes import assert_stripe_shape, every_object_and_event, shape_errors

API_KEY = "sk_test_shapes"


def test_invoice_family_objects_and_events_match_their_fixtures3_shape():
    with StripeEmulator() as emu:
        api = stripe.StripeClient(API_KEY, base_addresses={"api": emu.url}, max_network_retries=0)
        vat = api.v1.tax_rates.create(params={"display_name": "VAT", "percentage": "19", "inclusive": True})
        sales = api.v1.tax_rates.create(params={"display_name": "Tax", "percentage": "8.875", "inclusive": False})
        coupon = api.v1.coupons.create(params={"amount_off": 250, "currency": "usd", "duration": "once"})
        percent = api.v1.coupons.create(params={"percent_off": 12.5, "duration": "forever"})
        promo = api.v1.promotion_codes.create(params={"promotion": {"coupon": percent.id}, "code": "SHAPE"})
        mtr = api.v1.billing.meters.create(params={"display_name": "Calls", "event_name": "calls",
                                                  "default_aggregation": {"formula": "sum"}})
        metered = api.v1.prices.create(params={
            "product": "prod_sandbox_pro", "currency": "usd", "billing_scheme": "tiered", "tiers_mode": "volume",
            "recurring": {"interval": "month", "usage_type": "metered", "meter": mtr.id},
            "tiers": [{"up_to": 100, "unit_amount": 2}, {"up_to": "inf", "unit_amount": 1}]})
        cus = api.v1.customers.create(params={"email": "s@example.com", "payment_method": "pm_card_visa",
                                              "invoice_settings": {"default_payment_method": "pm_card_visa"},
                                              "coupon": coupon.id})
        sub = api.v1.subscriptions.create(params={
            "customer": cus.id, "items": [{"price": "price_sandbox_pro", "tax_rates": [vat.id]},
                                          {"price": metered.id}],
            "discounts": [{"promotion_code": promo.id}], "default_tax_rates": [sales.id]})
        api.v1.billing.meter_events.create(params={"event_name": "calls", "identifier": "shape-1",
                                                   "payload": {"stripe_customer_id": cus.id, "value": "150"}})
        api.v1.invoice_items.create(params={"customer": cus.id, "amount": 400, "currency": "usd",
                                            "subscription": sub.id, "tax_rates": [sales.id]})
        draft = api.v1.invoices.create(params={"customer": cus.id, "discounts": [{"coupon": percent.id}]})
        api.v1.invoice_items.create(params={"customer": cus.id, "pricing": {"price": "price_sandbox_team"},
                                            "invoice": draft.id})
        api.v1.invoices.finalize_invoice(draft.id)
        preview = api.v1.invoices.create_preview(params={"subscription": sub.id})
        emu.advance(days=32)

        objects, events = every_object_and_event(emu)
        kinds = {o["object"] for o in objects}
        assert kinds >= {"invoice", "invoiceitem", "coupon", "promotion_code", "discount", "tax_rate",
                         "billing.meter", "price"}
        for obj in objects:
            assert_stripe_shape(obj)
        for event in events:
            assert_stripe_shape(event)
            assert_stripe_shape(event["data"]["object"], f"{event['type']}: ")
        assert_stripe_shape(preview.to_dict())
        renewal = api.v1.invoices.retrieve(api.v1.subscriptions.retrieve(sub.id).latest_invoice,
                                           params={"expand": ["discounts"]})
        assert_stripe_shape(renewal.to_dict())
        assert renewal.lines.data[0].taxes and renewal.total_discount_amounts
        event = emu.store.table("billing.meter_events")["shape-1"]
        assert not shape_errors(event, shapes.RESOURCES["billing.meter_event"], "billing.meter_event")
        summary = api.v1.billing.meters.event_summaries.list(mtr.id, params={
            "customer": cus.id, "start_time": sub.current_period_start - sub.current_period_start % 60,
            "end_time": emu.now() - emu.now() % 60}).data[0]
        assert_stripe_shape(summary.to_dict())
