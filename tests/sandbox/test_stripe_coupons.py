"""Coupons, promotion codes, customer discounts and tax rates in the Stripe sandbox, and the discount
and tax arithmetic on invoice totals (as Stripe computes them), through the real stripe library."""
import pytest
import stripe

from sandbox.stripe import StripeEmulator
from sandbox.stripe.resources.coupons import allocate
from tests.sandbox.test_stripe_shapes import assert_stripe_shape

API_KEY = "sk_test_coupons"


@pytest.fixture
def emu():
    with StripeEmulator() as emulator:
        yield emulator


@pytest.fixture
def api(emu):
    return stripe.StripeClient(API_KEY, base_addresses={"api": emu.url}, max_network_retries=0)


def draft_with(api, cus, amounts, **params):
    invoice = api.v1.invoices.create(params={"customer": cus.id, **params})
    for amount in amounts:
        api.v1.invoice_items.create(params={"customer": cus.id, "amount": amount, "currency": "usd",
                                            "invoice": invoice.id})
    return api.v1.invoices.retrieve(invoice.id)


def line_discounts(invoice):
    return [[d.amount for d in line.discount_amounts] for line in invoice.lines.data]


def test_coupon_crud_and_events(emu, api):
    start = len(emu.events)
    coupon = api.v1.coupons.create(params={"id": "SPRING", "percent_off": "25.5", "duration": "repeating",
                                           "duration_in_months": 3, "name": "Spring", "max_redemptions": 5})
    assert (coupon.id, coupon.percent_off, coupon.amount_off, coupon.valid, coupon.times_redeemed) == \
        ("SPRING", 25.5, None, True, 0)
    assert api.v1.coupons.retrieve("SPRING").duration_in_months == 3
    assert api.v1.coupons.update("SPRING", params={"name": "Spring sale"}).name == "Spring sale"
    assert [c.id for c in api.v1.coupons.list().data] == ["SPRING"]
    assert api.v1.coupons.delete("SPRING").deleted is True
    assert [e["type"] for e in emu.events[start:]] == ["coupon.created", "coupon.updated", "coupon.deleted"]
    assert emu.events[start + 1]["data"]["previous_attributes"] == {"name": "Spring"}
    with pytest.raises(stripe.InvalidRequestError) as exc:
        api.v1.coupons.retrieve("SPRING")
    assert exc.value.http_status == 404 and "No such coupon: 'SPRING'" in exc.value.user_message
    assert_stripe_shape(coupon.to_dict())


@pytest.mark.parametrize("params, message", [
    ({"percent_off": 10, "amount_off": 100, "currency": "usd"}, "exactly one of percent_off or amount_off"),
    ({}, "exactly one of percent_off or amount_off"),
    ({"amount_off": 100}, "currency"),
    ({"percent_off": 120}, "between 0 and 100"),
    ({"percent_off": 10, "duration": "repeating"}, "duration_in_months"),
    ({"percent_off": 10, "duration": "weekly"}, "Invalid duration"),
    ({"percent_off": 10, "colour": "red"}, "Received unknown parameter: colour"),
])
def test_bad_coupons_are_refused(api, params, message):
    with pytest.raises(stripe.InvalidRequestError) as exc:
        api.v1.coupons.create(params=params)
    assert exc.value.http_status == 400 and message in exc.value.user_message


def test_percent_off_is_rounded_per_line(api):
    cus = api.v1.customers.create(params={"email": "p@example.com"})
    coupon = api.v1.coupons.create(params={"percent_off": 15, "duration": "once"})
    invoice = draft_with(api, cus, [333, 333, 333], discounts=[{"coupon": coupon.id}])
    # 15% of 333 = 49.95 -> 50 on each line: 150, not round(999 * 15%) = 150 (149.85)
    assert line_discounts(invoice) == [[50], [50], [50]]
    assert (invoice.total_discount_amounts[0].amount, invoice.total) == (150, 849)
    invoice = draft_with(api, cus, [105, 105])  # 10.5% style half-cent cases round half up
    coupon = api.v1.coupons.create(params={"percent_off": 10, "duration": "once"})
    invoice = api.v1.invoices.update(invoice.id, params={"discounts": [{"coupon": coupon.id}]})
    assert line_discounts(invoice) == [[11], [11]] and invoice.total == 188


def test_amount_off_is_split_in_proportion_and_never_exceeds_the_lines(api):
    cus = api.v1.customers.create(params={"email": "a@example.com"})
    coupon = api.v1.coupons.create(params={"amount_off": 1000, "currency": "usd", "duration": "once"})
    invoice = draft_with(api, cus, [1000, 2000, 3000], discounts=[{"coupon": coupon.id}])
    assert line_discounts(invoice) == [[167], [333], [500]]  # 166.67, 333.33, 500 by largest remainder
    assert invoice.total == 5000
    big = api.v1.coupons.create(params={"amount_off": 10000, "currency": "usd", "duration": "once"})
    invoice = draft_with(api, cus, [300, 200], discounts=[{"coupon": big.id}])
    assert line_discounts(invoice) == [[300], [200]] and invoice.total == 0 and invoice.amount_due == 0
    eur = api.v1.coupons.create(params={"amount_off": 100, "currency": "eur", "duration": "once"})
    with pytest.raises(stripe.InvalidRequestError, match="eur"):
        api.v1.invoices.create(params={"customer": cus.id, "discounts": [{"coupon": eur.id}]})


def test_allocation_keeps_every_minor_unit():
    assert allocate(100, [1, 1, 1]) == [34, 33, 33]
    assert allocate(7, [0, 5, 5]) == [0, 4, 3]
    assert sum(allocate(999, [123, 456, 789, 1])) == 999
    assert allocate(5, [0, 0]) == [0, 0]


def test_discount_before_exclusive_and_inclusive_tax(api):
    cus = api.v1.customers.create(params={"email": "t@example.com"})
    sales = api.v1.tax_rates.create(params={"display_name": "Sales tax", "percentage": "8.875", "inclusive": False,
                                            "country": "US", "state": "NY", "tax_type": "sales_tax"})
    vat = api.v1.tax_rates.create(params={"display_name": "VAT", "percentage": 19, "inclusive": True,
                                          "country": "DE", "tax_type": "vat"})
    coupon = api.v1.coupons.create(params={"percent_off": 20, "duration": "forever"})
    invoice = api.v1.invoices.create(params={"customer": cus.id, "discounts": [{"coupon": coupon.id}]})
    api.v1.invoice_items.create(params={"customer": cus.id, "amount": 1000, "currency": "usd", "invoice": invoice.id,
                                        "tax_rates": [sales.id]})
    api.v1.invoice_items.create(params={"customer": cus.id, "amount": 1190, "currency": "usd", "invoice": invoice.id,
                                        "tax_rates": [vat.id]})
    invoice = api.v1.invoices.retrieve(invoice.id)
    exclusive, inclusive = (line.taxes[0] for line in invoice.lines.data)
    # Line 1: 1000 - 200 = 800; 8.875% of 800 = 71 exclusive, added.
    assert (exclusive.amount, exclusive.taxable_amount, exclusive.tax_behavior) == (71, 800, "exclusive")
    # Line 2: 1190 - 238 = 952 holds 19% VAT: 952 / 1.19 = 800 taxable, 152 tax.
    assert (inclusive.amount, inclusive.taxable_amount, inclusive.tax_behavior) == (152, 800, "inclusive")
    assert inclusive.tax_rate_details.tax_rate == vat.id and inclusive.type == "tax_rate_details"
    assert invoice.subtotal == 2190
    assert invoice.subtotal_excluding_tax == 2190 - 190  # before invoice discounts: 1190 holds 190 VAT
    assert invoice.total == 2190 - 438 + 71
    assert invoice.total_excluding_tax == invoice.total - 71 - 152
    assert {t.tax_rate_details.tax_rate: t.amount for t in invoice.total_taxes} == {sales.id: 71, vat.id: 152}
    assert sales.percentage == 8.875 and vat.percentage == 19


def test_tax_rates_update_list_and_errors(emu, api):
    start = len(emu.events)
    rate = api.v1.tax_rates.create(params={"display_name": "GST", "percentage": 10, "inclusive": False})
    rate = api.v1.tax_rates.update(rate.id, params={"active": False, "metadata": {"k": "v"}})
    assert rate.active is False
    assert [e["type"] for e in emu.events[start:]] == ["tax_rate.created", "tax_rate.updated"]
    assert [r.id for r in api.v1.tax_rates.list(params={"active": False}).data] == [rate.id]
    cus = api.v1.customers.create(params={"email": "x@example.com"})
    with pytest.raises(stripe.InvalidRequestError, match="inactive"):
        api.v1.invoices.create(params={"customer": cus.id, "default_tax_rates": [rate.id]})
    for params, message in [({"display_name": "X", "inclusive": False}, "Missing required param: percentage"),
                            ({"display_name": "X", "inclusive": False, "percentage": "abc"}, "Invalid decimal"),
                            ({"display_name": "X", "inclusive": False, "percentage": 5, "rate": 1},
                             "Received unknown parameter: rate")]:
        with pytest.raises(stripe.InvalidRequestError, match=message):
            api.v1.tax_rates.create(params=params)
    with pytest.raises(stripe.InvalidRequestError, match="percentage"):
        api.v1.tax_rates.update(rate.id, params={"percentage": 5})  # a rate's percentage never changes
    assert_stripe_shape(rate.to_dict())


def test_promotion_codes_redeem_their_coupon_with_limits(emu, api):
    coupon = api.v1.coupons.create(params={"amount_off": 500, "currency": "usd", "duration": "once"})
    start = len(emu.events)
    promo = api.v1.promotion_codes.create(params={"promotion": {"type": "coupon", "coupon": coupon.id},
                                                  "code": "WELCOME", "max_redemptions": 1})
    assert (promo.code, promo.promotion.coupon, promo.active) == ("WELCOME", coupon.id, True)
    assert [p.id for p in api.v1.promotion_codes.list(params={"code": "WELCOME"}).data] == [promo.id]
    cus = api.v1.customers.create(params={"email": "w@example.com"})
    invoice = draft_with(api, cus, [2000], discounts=[{"promotion_code": promo.id}])
    assert invoice.total == 1500
    discount = emu.get(invoice.discounts[0])
    assert discount["promotion_code"] == promo.id and discount["source"]["coupon"] == coupon.id
    assert api.v1.promotion_codes.retrieve(promo.id).times_redeemed == 1
    with pytest.raises(stripe.InvalidRequestError, match="maximum redemptions"):
        api.v1.invoices.create(params={"customer": cus.id, "discounts": [{"promotion_code": promo.id}]})
    updated = api.v1.promotion_codes.update(promo.id, params={"active": False})
    assert updated.active is False
    assert [e["type"] for e in emu.events[start:]] == ["promotion_code.created", "customer.created",
                                                        "invoice.created", "invoiceitem.created",
                                                        "promotion_code.updated"]
    with pytest.raises(stripe.InvalidRequestError, match="Received unknown parameter: coupon"):
        api.v1.promotion_codes.create(params={"coupon": coupon.id})
    with pytest.raises(stripe.InvalidRequestError, match="No such coupon: 'NOPE'"):
        api.v1.promotion_codes.create(params={"promotion": {"coupon": "NOPE"}})
    with pytest.raises(stripe.InvalidRequestError, match="No such promotion_code"):
        api.v1.promotion_codes.retrieve("promo_missing")
    for obj in emu.list_objects("promotion_code") + emu.list_objects("discount"):
        assert_stripe_shape(obj)


def test_customer_discount_applies_to_their_invoices_and_can_be_removed(emu, api):
    coupon = api.v1.coupons.create(params={"percent_off": 50, "duration": "forever"})
    start = len(emu.events)
    cus = api.v1.customers.create(params={"email": "c@example.com", "coupon": coupon.id})
    assert "customer.discount.created" in [e["type"] for e in emu.events[start:]]
    sub = api.v1.subscriptions.create(params={"customer": cus.id, "items": [{"price": "price_sandbox_pro"}],
                                              "payment_behavior": "default_incomplete"})
    invoice = api.v1.invoices.retrieve(sub.latest_invoice)
    assert invoice.total == 450 and len(invoice.discounts) == 1
    removed = api.v1.customers.delete_discount(cus.id)
    assert removed.deleted is True
    assert emu.events[-1]["type"] == "customer.discount.deleted"
    with pytest.raises(stripe.InvalidRequestError):
        api.v1.customers.delete_discount(cus.id)


def discount_events(emu, start):
    return [(e["type"], e["data"]["object"], e["data"].get("previous_attributes")) for e in emu.events[start:]
            if e["type"].startswith("customer.discount.")]


def paying_customer(api, email):
    return api.v1.customers.create(params={"email": email, "payment_method": "pm_card_visa",
                                           "invoice_settings": {"default_payment_method": "pm_card_visa"}})


def test_a_subscription_gaining_changing_and_losing_a_discount_emits_customer_discount_events(emu, api):
    api.v1.coupons.create(params={"id": "LIVE25", "percent_off": 25, "duration": "forever", "name": "Live 25"})
    api.v1.coupons.create(params={"id": "FIVE", "amount_off": 500, "currency": "usd", "duration": "repeating",
                                  "duration_in_months": 3})
    cus = paying_customer(api, "sub-discount@example.com")
    start = len(emu.events)
    sub = api.v1.subscriptions.create(params={"customer": cus.id, "items": [{"price": "price_sandbox_pro"}],
                                              "discounts": [{"coupon": "LIVE25"}]})
    [(kind, created, _)] = discount_events(emu, start)
    assert kind == "customer.discount.created" and sub.discounts == [created["id"]]
    assert (created["customer"], created["subscription"], created["source"]) == (
        cus.id, sub.id, {"coupon": "LIVE25", "type": "coupon"})  # the current API: the coupon by id, not expanded
    assert created["start"] and created["end"] is None and created["promotion_code"] is None
    types = [e["type"] for e in emu.events[start:]]
    assert types.index("customer.discount.created") < types.index("customer.subscription.created")
    assert_stripe_shape(created)

    # The subscription names its discounts by id; expand[] gives the discount and its coupon.
    expanded = api.v1.subscriptions.retrieve(sub.id, params={"expand": ["discounts.source.coupon"]})
    assert expanded.discounts[0].id == created["id"]
    assert (expanded.discounts[0].source.coupon.name, expanded.discounts[0].source.coupon.percent_off) == ("Live 25", 25)
    assert api.v1.subscriptions.retrieve(sub.id, params={"expand": ["discounts"]}).discounts[0].source.coupon == "LIVE25"

    start = len(emu.events)
    api.v1.subscriptions.update(sub.id, params={"coupon": "FIVE"})
    [(kind, updated, previous)] = discount_events(emu, start)
    assert kind == "customer.discount.updated" and previous == {"source": {"coupon": "LIVE25", "type": "coupon"}}
    assert updated["source"]["coupon"] == "FIVE" and updated["end"] > updated["start"]  # repeating: it ends
    assert emu.events[-1]["type"] == "customer.subscription.updated"

    start = len(emu.events)
    removed = api.v1.subscriptions.delete_discount(sub.id)
    assert removed.deleted is True and removed.id == updated["id"]
    [(kind, deleted, _)] = discount_events(emu, start)
    assert (kind, deleted["id"]) == ("customer.discount.deleted", updated["id"])
    last = emu.events[-1]
    assert last["type"] == "customer.subscription.updated" and last["data"]["object"]["discounts"] == []
    assert last["data"]["previous_attributes"] == {"discounts": [updated["id"]]}
    assert api.v1.subscriptions.retrieve(sub.id).discounts == []
    with pytest.raises(stripe.InvalidRequestError, match="No active discount"):
        api.v1.subscriptions.delete_discount(sub.id)

    start = len(emu.events)
    api.v1.subscriptions.update(sub.id, params={"discounts": [{"coupon": "LIVE25"}]})
    api.v1.subscriptions.update(sub.id, params={"discounts": ""})
    assert [kind for kind, _, _ in discount_events(emu, start)] == ["customer.discount.created",
                                                                   "customer.discount.deleted"]


def test_a_once_discount_is_used_by_the_first_invoice_and_leaves_the_subscription(emu, api):
    api.v1.coupons.create(params={"id": "HALF", "percent_off": 50, "duration": "once"})
    cus = paying_customer(api, "once@example.com")
    start = len(emu.events)
    sub = api.v1.subscriptions.create(params={"customer": cus.id, "items": [{"price": "price_sandbox_pro"}],
                                              "coupon": "HALF"})
    assert [kind for kind, _, _ in discount_events(emu, start)] == ["customer.discount.created",
                                                                   "customer.discount.deleted"]
    assert api.v1.invoices.retrieve(sub.latest_invoice).total == 450
    assert api.v1.subscriptions.retrieve(sub.id).discounts == []


def test_a_checkout_with_a_coupon_emits_the_subscription_discount(emu, api):
    api.v1.coupons.create(params={"id": "CHK20", "percent_off": 20, "duration": "forever"})
    session = api.v1.checkout.sessions.create(params={
        "mode": "subscription", "line_items": [{"price": "price_sandbox_pro"}], "success_url": "https://x.test/ok",
        "customer_email": "chk@example.com", "discounts": [{"coupon": "CHK20"}]})
    start = len(emu.events)
    result = emu.pay_checkout(session.id)
    [(kind, created, _)] = discount_events(emu, start)
    assert (kind, created["subscription"], created["customer"]) == (
        "customer.discount.created", result["subscription"], result["customer"])



def test_inclusive_tax_is_the_rounded_tax_and_the_base_is_what_is_left(api):
    cus = api.v1.customers.create(params={"email": "r@example.com"})
    vat = api.v1.tax_rates.create(params={"display_name": "VAT", "percentage": 20, "inclusive": True})
    invoice = api.v1.invoices.create(params={"customer": cus.id, "default_tax_rates": [vat.id]})
    api.v1.invoice_items.create(params={"customer": cus.id, "amount": 9, "currency": "usd", "invoice": invoice.id})
    tax = api.v1.invoices.retrieve(invoice.id).total_taxes[0]
    assert (tax.amount, tax.taxable_amount) == (2, 7)  # 9 x 20/120 = 1.5 -> 2; 9 - 2 = 7
    assert api.v1.invoices.retrieve(invoice.id).total == 9  # inclusive tax adds nothing
