"""Invoices and invoice items in the Stripe sandbox, through the real stripe library: drafts from
pending items, totals with discounts and taxes, finalize/pay/void/uncollectible/send/delete, the
preview, renewal invoices with discounts and tax rates, the events and Stripe's errors."""
import pytest
import stripe

from sandbox.stripe import StripeEmulator
from tests.sandbox.test_stripe_shapes import assert_stripe_shape

API_KEY = "sk_test_invoices"


@pytest.fixture
def emu():
    with StripeEmulator() as emulator:
        yield emulator


@pytest.fixture
def api(emu):
    return stripe.StripeClient(API_KEY, base_addresses={"api": emu.url}, max_network_retries=0)


def customer(api, pm="pm_card_visa", **extra):
    params = {"email": "ada@example.com", "name": "Ada", **extra}
    if pm:
        params.update(payment_method=pm, invoice_settings={"default_payment_method": pm})
    return api.v1.customers.create(params=params)


def types(emu, start=0):
    return [e["type"] for e in emu.events[start:]]


def test_a_draft_collects_pending_items_and_finalize_then_pay_charges_the_default_card(emu, api):
    cus = customer(api)
    one = api.v1.invoice_items.create(params={"customer": cus.id, "amount": 1250, "currency": "usd",
                                              "description": "Setup fee", "metadata": {"k": "v"}})
    two = api.v1.invoice_items.create(params={"customer": cus.id, "pricing": {"price": "price_sandbox_pro"},
                                              "quantity": 2})
    assert (one.invoice, two.amount, two.quantity) == (None, 1800, 2)
    pending = api.v1.invoice_items.list(params={"customer": cus.id, "pending": True})
    assert {i.id for i in pending.data} == {one.id, two.id}

    start = len(emu.events)
    invoice = api.v1.invoices.create(params={"customer": cus.id, "pending_invoice_items_behavior": "include",
                                             "metadata": {"order": "42"}})
    assert (invoice.status, invoice.billing_reason, invoice.auto_advance) == ("draft", "manual", False)
    assert (invoice.subtotal, invoice.total, invoice.amount_due, invoice.amount_remaining) == (3050, 3050, 3050, 3050)
    assert [line.amount for line in invoice.lines.data] == [1250, 1800]
    assert invoice.lines.data[1].pricing.price_details.price == "price_sandbox_pro"
    assert invoice.lines.data[0].parent.invoice_item_details.invoice_item == one.id
    assert api.v1.invoice_items.retrieve(one.id).invoice == invoice.id
    assert invoice.number is None and invoice.hosted_invoice_url is None

    invoice = api.v1.invoices.finalize_invoice(invoice.id)
    assert invoice.status == "open" and invoice.number.endswith("-0001")
    assert invoice.hosted_invoice_url.endswith(f"/invoices/{invoice.id}")
    assert invoice.invoice_pdf.endswith(f"/invoices/{invoice.id}/pdf")
    assert emu.now() - 5 <= invoice.status_transitions.finalized_at <= emu.now()

    invoice = api.v1.invoices.pay(invoice.id)
    assert (invoice.status, invoice.amount_paid, invoice.amount_remaining) == ("paid", 3050, 0)
    assert invoice.status_transitions.paid_at is not None
    assert types(emu, start) == ["invoice.created", "invoice.finalized", "payment_intent.created",
                                 "charge.succeeded", "payment_intent.succeeded", "invoice.paid",
                                 "invoice.payment_succeeded"]
    for event in emu.events:
        assert_stripe_shape(event["data"]["object"], f"{event['type']}: ")
    assert_stripe_shape(api.v1.invoices.retrieve(invoice.id).to_dict())


def test_pending_items_stay_out_unless_included_and_delete_returns_them(emu, api):
    cus = customer(api)
    item = api.v1.invoice_items.create(params={"customer": cus.id, "amount": 500, "currency": "usd"})
    empty = api.v1.invoices.create(params={"customer": cus.id})
    assert empty.total == 0 and empty.lines.data == []
    draft = api.v1.invoices.create(params={"customer": cus.id, "pending_invoice_items_behavior": "include"})
    assert draft.total == 500
    start = len(emu.events)
    deleted = api.v1.invoices.delete(draft.id)
    assert deleted.deleted is True
    assert types(emu, start) == ["invoice.deleted"]
    assert api.v1.invoice_items.retrieve(item.id).invoice is None
    with pytest.raises(stripe.InvalidRequestError) as exc:
        api.v1.invoices.retrieve(draft.id)
    assert exc.value.http_status == 404 and f"No such invoice: '{draft.id}'" in exc.value.user_message


def test_invoice_items_added_to_a_draft_update_and_delete_change_its_totals(emu, api):
    cus = customer(api)
    draft = api.v1.invoices.create(params={"customer": cus.id})
    item = api.v1.invoice_items.create(params={"customer": cus.id, "invoice": draft.id,
                                               "unit_amount_decimal": "333.5", "quantity": 3})
    assert item.amount == 1001  # 1000.5 rounded half up
    assert api.v1.invoices.retrieve(draft.id).total == 1001
    start = len(emu.events)
    api.v1.invoice_items.update(item.id, params={"quantity": 1, "description": "One"})
    refreshed = api.v1.invoices.retrieve(draft.id)
    assert refreshed.total == 334 and refreshed.lines.data[0].description == "One"
    assert types(emu, start) == []  # Stripe emits no invoiceitem.updated
    api.v1.invoice_items.delete(item.id)
    assert api.v1.invoices.retrieve(draft.id).total == 0
    assert types(emu, start) == ["invoiceitem.deleted"]

    api.v1.invoices.finalize_invoice(draft.id)
    other = api.v1.invoice_items.create(params={"customer": cus.id, "amount": 100, "currency": "usd"})
    with pytest.raises(stripe.InvalidRequestError) as exc:
        api.v1.invoice_items.create(params={"customer": cus.id, "amount": 100, "currency": "usd",
                                            "invoice": draft.id})
    assert exc.value.code == "invoice_not_editable"
    assert api.v1.invoice_items.retrieve(other.id).invoice is None


def test_a_zero_invoice_is_paid_when_finalized(emu, api):
    cus = customer(api, pm=None)
    draft = api.v1.invoices.create(params={"customer": cus.id})
    start = len(emu.events)
    paid = api.v1.invoices.finalize_invoice(draft.id)
    assert (paid.status, paid.amount_paid, paid.attempted) == ("paid", 0, False)
    assert types(emu, start) == ["invoice.finalized", "invoice.paid", "invoice.payment_succeeded"]


def test_a_declined_payment_leaves_the_invoice_open_with_stripes_card_error(emu, api):
    cus = customer(api, pm="pm_card_chargeCustomerFail")
    api.v1.invoice_items.create(params={"customer": cus.id, "amount": 700, "currency": "usd"})
    invoice = api.v1.invoices.create(params={"customer": cus.id, "pending_invoice_items_behavior": "include"})
    api.v1.invoices.finalize_invoice(invoice.id)
    start = len(emu.events)
    with pytest.raises(stripe.CardError) as exc:
        api.v1.invoices.pay(invoice.id)
    assert exc.value.http_status == 402 and exc.value.code == "card_declined"
    failed = api.v1.invoices.retrieve(invoice.id)
    assert (failed.status, failed.attempt_count, failed.attempted) == ("open", 1, True)
    assert "invoice.payment_failed" in types(emu, start)
    # Paid with another card of the customer's.
    visa = api.v1.payment_methods.attach("pm_card_visa", params={"customer": cus.id})
    assert api.v1.invoices.pay(invoice.id, params={"payment_method": visa.id}).status == "paid"
    with pytest.raises(stripe.InvalidRequestError, match="already paid"):
        api.v1.invoices.pay(invoice.id)


def test_void_mark_uncollectible_and_send_follow_stripes_states(emu, api):
    cus = customer(api)
    api.v1.invoice_items.create(params={"customer": cus.id, "amount": 400, "currency": "usd"})
    draft = api.v1.invoices.create(params={"customer": cus.id, "pending_invoice_items_behavior": "include",
                                           "collection_method": "send_invoice", "days_until_due": 14})
    assert draft.due_date - draft.created == 14 * 86400
    for call in (api.v1.invoices.void_invoice, api.v1.invoices.mark_uncollectible, api.v1.invoices.send_invoice):
        with pytest.raises(stripe.InvalidRequestError):
            call(draft.id)
    api.v1.invoices.finalize_invoice(draft.id)
    start = len(emu.events)
    sent = api.v1.invoices.send_invoice(draft.id)
    assert sent.status == "open"
    uncollectible = api.v1.invoices.mark_uncollectible(draft.id)
    assert uncollectible.status == "uncollectible" and uncollectible.status_transitions.marked_uncollectible_at
    void = api.v1.invoices.void_invoice(draft.id)
    assert void.status == "void" and void.status_transitions.voided_at and void.amount_remaining == 0
    assert types(emu, start) == ["invoice.sent", "invoice.marked_uncollectible", "invoice.voided"]
    with pytest.raises(stripe.InvalidRequestError, match="only delete draft"):
        api.v1.invoices.delete(draft.id)
    with pytest.raises(stripe.InvalidRequestError):
        api.v1.invoices.pay(draft.id)

    auto = api.v1.invoices.create(params={"customer": cus.id})
    api.v1.invoice_items.create(params={"customer": cus.id, "amount": 400, "currency": "usd", "invoice": auto.id})
    api.v1.invoices.finalize_invoice(auto.id)
    with pytest.raises(stripe.InvalidRequestError, match="send_invoice"):
        api.v1.invoices.send_invoice(auto.id)


def test_update_a_draft_then_only_metadata_once_finalized(emu, api):
    cus = customer(api)
    draft = api.v1.invoices.create(params={"customer": cus.id})
    api.v1.invoice_items.create(params={"customer": cus.id, "amount": 100, "currency": "usd", "invoice": draft.id})
    start = len(emu.events)
    updated = api.v1.invoices.update(draft.id, params={"description": "Consulting", "metadata": {"a": "1"}})
    assert updated.description == "Consulting" and updated.metadata.to_dict() == {"a": "1"}
    event = emu.events[start]
    assert event["type"] == "invoice.updated"
    assert event["data"]["previous_attributes"] == {"description": None, "metadata": {}}
    api.v1.invoices.finalize_invoice(draft.id)
    with pytest.raises(stripe.InvalidRequestError, match="Finalized invoices"):
        api.v1.invoices.update(draft.id, params={"collection_method": "send_invoice"})
    assert api.v1.invoices.update(draft.id, params={"metadata": {"b": "2"}}).metadata.to_dict() == {"a": "1", "b": "2"}


def test_auto_advance_finalizes_a_draft_an_hour_later_and_charges_it(emu, api):
    cus = customer(api)
    draft = api.v1.invoices.create(params={"customer": cus.id, "auto_advance": True})
    api.v1.invoice_items.create(params={"customer": cus.id, "amount": 900, "currency": "usd", "invoice": draft.id})
    assert draft.automatically_finalizes_at == draft.created + 3600
    emu.advance(hours=2)
    assert api.v1.invoices.retrieve(draft.id).status == "paid"


def test_unknown_parameters_ids_and_bad_values_get_stripes_errors(api):
    cus = customer(api)
    cases = [
        (lambda: api.v1.invoices.create(params={"customer": cus.id, "colour": "red"}), 400,
         "Received unknown parameter: colour"),
        (lambda: api.v1.invoices.create(params={"customer": "cus_missing"}), 404, "No such customer: 'cus_missing'"),
        (lambda: api.v1.invoices.create(params={}), 400, "Missing required param: customer."),
        (lambda: api.v1.invoices.retrieve("in_missing"), 404, "No such invoice: 'in_missing'"),
        (lambda: api.v1.invoices.pay("in_missing"), 404, "No such invoice: 'in_missing'"),
        (lambda: api.v1.invoices.create(params={"customer": cus.id, "discounts": [{"coupon": "NOPE"}]}), 404,
         "No such coupon: 'NOPE'"),
        (lambda: api.v1.invoices.create(params={"customer": cus.id, "default_tax_rates": ["txr_missing"]}), 404,
         "No such tax_rate: 'txr_missing'"),
        (lambda: api.v1.invoice_items.create(params={"customer": cus.id, "currency": "usd"}), 400,
         "You must specify one of amount"),
        (lambda: api.v1.invoice_items.create(params={"customer": cus.id, "amount": 5, "currency": "usd",
                                                     "price": "price_sandbox_pro"}), 400,
         "Received unknown parameter: price"),
        (lambda: api.v1.invoice_items.create(params={"customer": cus.id, "pricing": {"price": "price_nope"}}), 404,
         "No such price: 'price_nope'"),
        (lambda: api.v1.invoice_items.retrieve("ii_missing"), 404, "No such invoiceitem: 'ii_missing'"),
        (lambda: api.v1.invoices.create_preview(params={"customer": cus.id}), 404, "No upcoming invoices"),
    ]
    for call, status, message in cases:
        with pytest.raises(stripe.StripeError) as exc:
            call()
        assert exc.value.http_status == status, message
        assert message in exc.value.user_message
        assert exc.value.error.type == "invalid_request_error"


def test_renewal_invoice_carries_the_subscriptions_discount_tax_rates_and_pending_items(emu, api):
    cus = customer(api)
    vat = api.v1.tax_rates.create(params={"display_name": "VAT", "percentage": "20", "inclusive": False})
    coupon = api.v1.coupons.create(params={"percent_off": 10, "duration": "repeating", "duration_in_months": 2})
    sub = api.v1.subscriptions.create(params={
        "customer": cus.id, "items": [{"price": "price_sandbox_pro", "quantity": 3}],
        "discounts": [{"coupon": coupon.id}], "default_tax_rates": [vat.id]})
    first = api.v1.invoices.retrieve(sub.latest_invoice)
    # 2700 - 10% (270) = 2430, + 20% VAT (486) = 2916
    assert (first.subtotal, first.total_discount_amounts[0].amount, first.total_taxes[0].amount,
            first.total, first.total_excluding_tax) == (2700, 270, 486, 2916, 2430)
    assert first.status == "paid" and first.discounts == sub.discounts
    api.v1.invoice_items.create(params={"customer": cus.id, "amount": 1000, "currency": "usd",
                                        "subscription": sub.id, "description": "Extra seats"})
    preview = api.v1.invoices.create_preview(params={"customer": cus.id, "subscription": sub.id})
    assert preview.total == 2916 + 1080  # the pending item is discounted and taxed too
    upcoming = api.deserialize(api.raw_request("get", "/v1/invoices/upcoming", customer=cus.id), api_mode="V1")
    assert upcoming.total == preview.total and upcoming.id.startswith("upcoming_in_")
    assert not any(i["id"] == upcoming.id for i in emu.list_objects("invoice"))  # a preview is not kept
    emu.advance(days=32)
    renewal = api.v1.invoices.retrieve(api.v1.subscriptions.retrieve(sub.id).latest_invoice)
    assert renewal.billing_reason == "subscription_cycle" and renewal.status == "paid"
    assert renewal.total == 3996 and len(renewal.lines.data) == 2
    assert renewal.lines.data[0].period.start == renewal.period_end
    emu.advance(days=31)
    emu.advance(days=31)
    later = api.v1.invoices.retrieve(api.v1.subscriptions.retrieve(sub.id).latest_invoice)
    assert later.total == 3240 and later.total_discount_amounts == []  # two months of discount are over
    for kind in ("invoice", "invoiceitem", "discount", "tax_rate", "coupon"):
        for obj in emu.list_objects(kind):
            assert_stripe_shape(obj)


def test_a_refused_update_changes_nothing(emu, api):
    cus = customer(api)
    draft = api.v1.invoices.create(params={"customer": cus.id, "description": "Before"})
    start = len(emu.events)
    with pytest.raises(stripe.InvalidRequestError, match="No such tax_rate"):
        api.v1.invoices.update(draft.id, params={"description": "After", "default_tax_rates": ["txr_missing"]})
    assert api.v1.invoices.retrieve(draft.id).description == "Before"
    item = api.v1.invoice_items.create(params={"customer": cus.id, "amount": 100, "currency": "usd",
                                               "description": "Before"})
    coupon = api.v1.coupons.create(params={"percent_off": 5, "duration": "once"})
    with pytest.raises(stripe.InvalidRequestError, match="not discountable"):
        api.v1.invoice_items.update(item.id, params={"description": "After", "discountable": False,
                                                     "discounts": [{"coupon": coupon.id}]})
    kept = api.v1.invoice_items.retrieve(item.id)
    assert (kept.description, kept.discountable, kept.discounts) == ("Before", True, [])
    assert api.v1.coupons.retrieve(coupon.id).times_redeemed == 0
    assert [e["type"] for e in emu.events[start:]] == ["invoiceitem.created", "coupon.created"]


def test_hosted_invoice_page_and_pdf_show_the_discount_and_tax_between_subtotal_and_total(emu, api):
    import urllib.request
    cus = customer(api)
    vat = api.v1.tax_rates.create(params={"display_name": "VAT", "percentage": 20, "inclusive": False})
    coupon = api.v1.coupons.create(params={"percent_off": 10, "duration": "once", "name": "Launch"})
    draft = api.v1.invoices.create(params={"customer": cus.id, "discounts": [{"coupon": coupon.id}],
                                           "default_tax_rates": [vat.id]})
    api.v1.invoice_items.create(params={"customer": cus.id, "amount": 1000, "currency": "usd", "invoice": draft.id,
                                        "description": "Consulting"})
    invoice = api.v1.invoices.finalize_invoice(draft.id)
    html = urllib.request.urlopen(invoice.hosted_invoice_url).read().decode()
    for text in ("Consulting", "Subtotal", "$10.00", "Launch", "-$1.00", "VAT (20%)", "$1.80", "Total", "$10.80"):
        assert text in html, text
    pdf = urllib.request.urlopen(invoice.invoice_pdf).read()
    assert pdf.startswith(b"%PDF") and b"(Launch  -$1.00)" in pdf and b"(VAT \\(20%\\)  $1.80)" in pdf


def test_a_once_coupon_reduces_only_the_first_invoice(emu, api):
    cus = customer(api)
    once = api.v1.coupons.create(params={"amount_off": 400, "currency": "usd", "duration": "once"})
    sub = api.v1.subscriptions.create(params={"customer": cus.id, "items": [{"price": "price_sandbox_pro"}],
                                              "discounts": [{"coupon": once.id}]})
    first = api.v1.invoices.retrieve(sub.latest_invoice)
    assert first.total == 500 and len(first.discounts) == 1
    assert sub.discounts == []  # consumed by the first invoice, as Stripe shows it
    created = next(e for e in emu.events if e["type"] == "customer.subscription.created")
    assert created["data"]["object"]["discounts"] == []
    emu.advance(days=32)
    assert api.v1.invoices.retrieve(api.v1.subscriptions.retrieve(sub.id).latest_invoice).total == 900

    other = customer(api, coupon=api.v1.coupons.create(params={"percent_off": 50, "duration": "once"}).id)
    start = len(emu.events)
    draft = api.v1.subscriptions.create(params={"customer": other.id, "items": [{"price": "price_sandbox_pro"}]})
    assert api.v1.invoices.retrieve(draft.latest_invoice).total == 450
    assert "customer.discount.deleted" in [e["type"] for e in emu.events[start:]]


def test_a_one_off_invoice_takes_the_customers_discount_unless_it_names_its_own(emu, api):
    coupon = api.v1.coupons.create(params={"percent_off": 25, "duration": "once"})
    cus = customer(api, coupon=coupon.id)
    own = api.v1.invoices.create(params={"customer": cus.id, "discounts": ""})
    api.v1.invoice_items.create(params={"customer": cus.id, "amount": 1000, "currency": "usd", "invoice": own.id})
    assert api.v1.invoices.retrieve(own.id).total == 1000
    first = api.v1.invoices.create(params={"customer": cus.id})
    api.v1.invoice_items.create(params={"customer": cus.id, "amount": 1000, "currency": "usd", "invoice": first.id})
    assert api.v1.invoices.retrieve(first.id).total == 750
    start = len(emu.events)
    api.v1.invoices.finalize_invoice(first.id)
    assert "customer.discount.deleted" in [e["type"] for e in emu.events[start:]]
    later = api.v1.invoices.create(params={"customer": cus.id})
    assert later.discounts == []


def test_invoice_item_lists_page_and_filter_like_stripe(emu, api):
    cus = customer(api)
    made = [api.v1.invoice_items.create(params={"customer": cus.id, "amount": 100 + n, "currency": "usd"})
            for n in range(3)]
    page = api.v1.invoice_items.list(params={"customer": cus.id, "limit": 2})
    assert [i.id for i in page.data] == [made[2].id, made[1].id] and page.has_more
    rest = api.v1.invoice_items.list(params={"customer": cus.id, "starting_after": made[1].id})
    assert [i.id for i in rest.data] == [made[0].id] and not rest.has_more
    assert len(api.v1.invoice_items.list(params={"created": {"gte": made[0].date}}).data) == 3
    assert "created" not in page.data[0].to_dict()
    assert_stripe_shape(emu.get(page.data[0].id))
