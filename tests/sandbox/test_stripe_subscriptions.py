"""Subscriptions through the API, driven by the real stripe library: create, trials, every status,
prorations, pause_collection, resume, cancel; and the events Stripe emits for each change."""
import pytest
import stripe

from sandbox.stripe import StripeEmulator

from .test_stripe_shapes import assert_stripe_shape

API_KEY = "sk_test_subscriptions"
DAY = 86400
PASSES, DECLINES = "4242424242424242", "4000000000000341"
WATCHED = ("customer.subscription.", "invoice.", "invoiceitem.")


@pytest.fixture
def emu():
    with StripeEmulator(webhook_retry_seconds=0.01) as emulator:
        yield emulator


@pytest.fixture
def api(emu):
    return stripe.StripeClient(API_KEY, base_addresses={"api": emu.url}, max_network_retries=0)


def customer(api, emu, card=PASSES, **params):
    cus = api.v1.customers.create(params={"email": "ada@example.com", **params})
    if card:
        emu.set_card(cus.id, card=card)
    return cus.id


def types_since(emu, start: int) -> list[str]:
    return [e["type"] for e in emu.events[start:] if e["type"].startswith(WATCHED)]


def subscribe(api, customer_id, price="price_sandbox_pro", **params):
    return api.v1.subscriptions.create(params={"customer": customer_id, "items": [{"price": price}], **params})


def test_create_charges_the_first_invoice_and_is_active(api, emu):
    cus = customer(api, emu)
    start = len(emu.events)
    sub = subscribe(api, cus, metadata={"plan": "pro"}, items=[{"price": "price_sandbox_pro", "quantity": 2}])
    assert sub.status == "active"
    assert sub.metadata["plan"] == "pro"
    assert sub["items"].data[0].quantity == 2
    invoice = api.v1.invoices.retrieve(sub.latest_invoice)
    assert (invoice.status, invoice.amount_paid, invoice.billing_reason) == ("paid", 1800, "subscription_create")
    assert types_since(emu, start) == ["customer.subscription.created", "invoice.created", "invoice.finalized",
                                       "invoice.paid", "invoice.payment_succeeded",
                                       "customer.subscription.updated"]
    assert_stripe_shape(emu.get(sub.id))
    assert [s.id for s in api.v1.subscriptions.list(params={"customer": cus}).data] == [sub.id]


def test_create_refuses_unknown_parameters_and_ids(api, emu):
    cus = customer(api, emu)
    cases = [({"customer": cus, "items": [{"price": "price_sandbox_pro"}], "bogus": "1"},
              "Received unknown parameter: bogus"),
             ({"customer": "cus_missing", "items": [{"price": "price_sandbox_pro"}]},
              "No such customer: 'cus_missing'"),
             ({"customer": cus, "items": [{"price": "price_missing"}]}, "No such price: 'price_missing'"),
             ({"customer": cus, "items": [{"price": "price_sandbox_pro", "colour": "red"}]},
              "Received unknown parameter: items[0][colour]"),
             ({"customer": cus}, "Missing required param: items."),
             ({"customer": cus, "items": [{"price": "price_sandbox_pro"}], "coupon": "nope"}, "No such coupon"),
             ({"customer": cus, "items": [{"price": "price_sandbox_pro"}], "default_payment_method": "pm_nope"},
              "No such PaymentMethod: 'pm_nope'"),
             ({"customer": cus, "items": [{"price": "price_sandbox_pro"}], "payment_behavior": "maybe"},
              "Invalid payment_behavior")]
    for params, message in cases:
        with pytest.raises(stripe.InvalidRequestError) as error:
            api.v1.subscriptions.create(params=params)
        assert message in str(error.value.user_message), params
    with pytest.raises(stripe.InvalidRequestError) as error:
        api.v1.subscriptions.retrieve("sub_missing")
    assert error.value.http_status == 404
    assert not emu.list_objects("subscription")


def test_a_declined_first_payment_is_incomplete_then_expires_after_23_hours(api, emu):
    cus = customer(api, emu, card=DECLINES)
    sub = subscribe(api, cus)
    assert sub.status == "incomplete"
    invoice = api.v1.invoices.retrieve(sub.latest_invoice)
    assert (invoice.status, invoice.attempt_count) == ("open", 1)
    emu.advance(hours=22)
    assert api.v1.subscriptions.retrieve(sub.id).status == "incomplete"
    start = len(emu.events)
    emu.advance(hours=2)
    assert api.v1.subscriptions.retrieve(sub.id).status == "incomplete_expired"
    assert api.v1.invoices.retrieve(invoice.id).status == "void"
    assert types_since(emu, start) == ["invoice.voided", "customer.subscription.deleted"]


def test_paying_the_incomplete_invoice_activates_the_subscription(api, emu):
    cus = customer(api, emu, card=None)
    sub = subscribe(api, cus, payment_behavior="default_incomplete")
    invoice = api.v1.invoices.retrieve(sub.latest_invoice)
    assert (sub.status, invoice.status, invoice.attempt_count) == ("incomplete", "open", 0)
    emu.set_card(cus, card=PASSES)
    api.v1.invoices.pay(invoice.id)
    assert api.v1.subscriptions.retrieve(sub.id).status == "active"
    emu.advance(days=2)  # paid: it never expires
    assert api.v1.subscriptions.retrieve(sub.id).status == "active"


def test_error_if_incomplete_refuses_with_the_card_error_and_creates_nothing(api, emu):
    cus = customer(api, emu, card=DECLINES)
    with pytest.raises(stripe.CardError) as declined:
        subscribe(api, cus, payment_behavior="error_if_incomplete")
    assert declined.value.http_status == 402
    assert not emu.list_objects("subscription")


def test_trial_announces_its_end_three_days_before_then_bills(api, emu):
    cus = customer(api, emu)
    sub = subscribe(api, cus, trial_period_days=14)
    assert sub.status == "trialing"
    assert sub.trial_end - sub.trial_start == 14 * DAY
    assert api.v1.invoices.retrieve(sub.latest_invoice).amount_due == 0
    start = len(emu.events)
    emu.advance(days=10)
    assert types_since(emu, start) == []
    emu.advance(days=1, seconds=1)
    assert types_since(emu, start) == ["customer.subscription.trial_will_end"]
    emu.advance(days=3)
    sub = api.v1.subscriptions.retrieve(sub.id)
    assert sub.status == "active"
    invoice = api.v1.invoices.retrieve(sub.latest_invoice)
    assert (invoice.status, invoice.amount_paid) == ("paid", 900)
    updated = [e for e in emu.events if e["type"] == "customer.subscription.updated"][-1]
    assert updated["data"]["previous_attributes"]["status"] == "trialing"


def test_trial_end_without_payment_method_pauses_and_resume_bills(api, emu):
    cus = customer(api, emu, card=None)
    sub = subscribe(api, cus, trial_end=emu.now() + 5 * DAY,
                    trial_settings={"end_behavior": {"missing_payment_method": "pause"}})
    start = len(emu.events)
    emu.advance(days=6)
    assert api.v1.subscriptions.retrieve(sub.id).status == "paused"
    assert "customer.subscription.paused" in types_since(emu, start)
    emu.advance(days=40)  # a paused subscription bills nothing
    assert api.v1.subscriptions.retrieve(sub.id).latest_invoice == sub.latest_invoice
    emu.set_card(cus, card=PASSES)
    start = len(emu.events)
    resumed = api.v1.subscriptions.resume(sub.id)
    assert resumed.status == "active"
    assert resumed.current_period_start == emu.now() or abs(resumed.current_period_start - emu.now()) < 5
    assert api.v1.invoices.retrieve(resumed.latest_invoice).status == "paid"
    assert types_since(emu, start)[-1] == "customer.subscription.resumed"
    with pytest.raises(stripe.InvalidRequestError):
        api.v1.subscriptions.resume(sub.id)


def test_trial_end_without_payment_method_cancels_when_told(api, emu):
    cus = customer(api, emu, card=None)
    start = len(emu.events)
    sub = subscribe(api, cus, trial_period_days=1,
                    trial_settings={"end_behavior": {"missing_payment_method": "cancel"}})
    assert types_since(emu, start).count("customer.subscription.trial_will_end") == 1  # shorter than 3 days
    emu.advance(days=2)
    assert api.v1.subscriptions.retrieve(sub.id).status == "canceled"


def test_upgrade_mid_period_leaves_time_based_prorations_pending(api, emu):
    cus = customer(api, emu)
    sub = subscribe(api, cus)
    emu.advance(days=10)
    item = sub["items"].data[0]
    at = emu.now()
    updated = api.v1.subscriptions.update(sub.id, params={
        "items": [{"id": item.id, "price": "price_sandbox_team"}], "proration_date": at})
    assert updated["items"].data[0].price.id == "price_sandbox_team"
    left, length = sub.current_period_end - at, sub.current_period_end - sub.current_period_start
    items = sorted(emu.list_objects("invoiceitem"), key=lambda i: i["amount"])
    assert [i["amount"] for i in items] == [-round(900 * left / length), round(2900 * left / length)]
    assert all(i["proration"] and i["invoice"] is None for i in items)
    assert items[0]["description"].startswith("Unused time on Billing Console Pro after")
    for obj in items:
        assert_stripe_shape(obj)
    emu.advance(days=25)  # the renewal invoice carries the prorations
    renewal = api.v1.invoices.retrieve(api.v1.subscriptions.retrieve(sub.id).latest_invoice)
    assert renewal.amount_paid == 2900 + sum(i["amount"] for i in items)
    assert sorted(line.amount for line in renewal.lines.data) == sorted([i["amount"] for i in items] + [2900])


def test_always_invoice_bills_the_prorations_at_once(api, emu):
    cus = customer(api, emu)
    sub = subscribe(api, cus)
    emu.advance(days=15)
    start = len(emu.events)
    updated = api.v1.subscriptions.update(sub.id, params={
        "items": [{"id": sub["items"].data[0].id, "quantity": 2}], "proration_behavior": "always_invoice"})
    invoice = api.v1.invoices.retrieve(updated.latest_invoice)
    assert invoice.id != sub.latest_invoice and invoice.billing_reason == "subscription_update"
    assert invoice.status == "paid" and 0 < invoice.amount_paid < 900
    assert [line.amount for line in invoice.lines.data if line.amount < 0]
    assert "invoice.paid" in types_since(emu, start)
    assert all(i["invoice"] == invoice.id for i in emu.list_objects("invoiceitem"))


def test_quantity_change_with_proration_none_leaves_nothing_pending(api, emu):
    cus = customer(api, emu)
    sub = subscribe(api, cus)
    emu.advance(days=3)
    api.v1.subscriptions.update(sub.id, params={
        "items": [{"id": sub["items"].data[0].id, "quantity": 3}], "proration_behavior": "none"})
    assert api.v1.subscriptions.retrieve(sub.id)["items"].data[0].quantity == 3
    assert emu.list_objects("invoiceitem") == []
    with pytest.raises(stripe.InvalidRequestError) as error:
        api.v1.subscriptions.update(sub.id, params={"proration_behavior": "sometimes"})
    assert "proration_behavior" in error.value.user_message
    with pytest.raises(stripe.InvalidRequestError) as error:
        api.v1.subscriptions.update(sub.id, params={"items": [{"id": "si_missing", "quantity": 2}]})
    assert "No such subscription item: 'si_missing'" in error.value.user_message


def test_pause_collection_keeps_renewals_as_drafts_until_it_resumes(api, emu):
    cus = customer(api, emu)
    sub = subscribe(api, cus)
    resumes = sub.current_period_end + 5 * DAY
    updated = api.v1.subscriptions.update(sub.id, params={
        "pause_collection": {"behavior": "keep_as_draft", "resumes_at": resumes}})
    assert updated.pause_collection.behavior == "keep_as_draft"
    emu.advance(days=32)
    sub = api.v1.subscriptions.retrieve(sub.id)
    assert api.v1.invoices.retrieve(sub.latest_invoice).status == "draft"
    assert sub.pause_collection.behavior == "keep_as_draft"
    emu.advance(days=6)
    sub = api.v1.subscriptions.retrieve(sub.id)
    assert sub.status == "active" and sub.pause_collection is None
    with pytest.raises(stripe.InvalidRequestError):
        api.v1.subscriptions.update(sub.id, params={"pause_collection": {"behavior": "forever"}})


def test_pause_collection_mark_uncollectible(api, emu):
    cus = customer(api, emu)
    sub = subscribe(api, cus)
    api.v1.subscriptions.update(sub.id, params={"pause_collection": {"behavior": "mark_uncollectible"}})
    emu.advance(days=32)
    sub = api.v1.subscriptions.retrieve(sub.id)
    assert api.v1.invoices.retrieve(sub.latest_invoice).status == "uncollectible"
    api.v1.subscriptions.update(sub.id, params={"pause_collection": ""})
    assert api.v1.subscriptions.retrieve(sub.id).pause_collection is None


def test_retries_exhausted_makes_the_subscription_unpaid_when_the_account_says_so(api):
    with StripeEmulator(retries_exhausted="unpaid") as emu:
        api = stripe.StripeClient(API_KEY, base_addresses={"api": emu.url}, max_network_retries=0)
        cus = customer(api, emu)
        sub = subscribe(api, cus)
        emu.set_card(cus, "decline")
        emu.advance(days=32)
        assert api.v1.subscriptions.retrieve(sub.id).status == "past_due"
        emu.advance(days=8)
        assert api.v1.subscriptions.retrieve(sub.id).status == "unpaid"
        emu.advance(days=25)  # the next renewal: an open invoice, no attempt, still unpaid
        unpaid = api.v1.subscriptions.retrieve(sub.id)
        nxt = api.v1.invoices.retrieve(unpaid.latest_invoice)
        assert (unpaid.status, nxt.status, nxt.attempt_count) == ("unpaid", "open", 0)
        emu.set_card(cus, "succeed")
        api.v1.invoices.pay(api.v1.subscriptions.retrieve(sub.id).latest_invoice)
        assert api.v1.subscriptions.retrieve(sub.id).status == "active"
    with pytest.raises(ValueError):
        StripeEmulator(retries_exhausted="shrug")


def test_cancel_with_prorate_credits_the_unused_time(api, emu):
    cus = customer(api, emu)
    sub = subscribe(api, cus)
    emu.advance(days=15)
    start = len(emu.events)
    canceled = api.v1.subscriptions.cancel(sub.id, params={"prorate": True})
    assert canceled.status == "canceled"
    credit = emu.list_objects("invoiceitem")
    assert len(credit) == 1 and credit[0]["amount"] < 0
    assert "customer.subscription.deleted" in types_since(emu, start)
    with pytest.raises(stripe.InvalidRequestError):
        api.v1.subscriptions.cancel(sub.id)
    with pytest.raises(stripe.InvalidRequestError) as error:
        api.v1.subscriptions.cancel(subscribe(api, cus).id, params={"bogus": 1})
    assert "Received unknown parameter: bogus" in error.value.user_message


def test_ending_a_trial_now_bills_at_once(api, emu):
    cus = customer(api, emu)
    sub = subscribe(api, cus, trial_period_days=30)
    start = len(emu.events)
    ended = api.v1.subscriptions.update(sub.id, params={"trial_end": "now"})
    assert ended.status == "active"
    assert api.v1.invoices.retrieve(ended.latest_invoice).amount_paid == 900
    assert "customer.subscription.trial_will_end" in types_since(emu, start)


def test_switching_to_a_yearly_price_restarts_the_period_and_bills_at_once(api, emu):
    cus = customer(api, emu)
    sub = subscribe(api, cus)
    yearly = api.v1.prices.create(params={"product": "prod_sandbox_pro", "unit_amount": 9000, "currency": "usd",
                                          "recurring": {"interval": "year"}})
    emu.advance(days=10)
    updated = api.v1.subscriptions.update(sub.id, params={
        "items": [{"id": sub["items"].data[0].id, "price": yearly.id}]})
    assert updated.current_period_start == updated.billing_cycle_anchor
    assert updated.current_period_end - updated.current_period_start >= 365 * DAY
    invoice = api.v1.invoices.retrieve(updated.latest_invoice)
    credit = [line.amount for line in invoice.lines.data if line.amount < 0]
    assert invoice.billing_reason == "subscription_update" and len(credit) == 1
    assert invoice.amount_paid == 9000 + credit[0]


def test_billing_cycle_anchor_now_and_error_if_incomplete_without_a_payment_method(api, emu):
    cus = customer(api, emu)
    sub = subscribe(api, cus)
    emu.advance(days=5)
    reset = api.v1.subscriptions.update(sub.id, params={"billing_cycle_anchor": "now", "proration_behavior": "none"})
    assert reset.current_period_start > sub.current_period_start
    assert api.v1.invoices.retrieve(reset.latest_invoice).amount_paid == 900
    bare = customer(api, emu, card=None)
    with pytest.raises(stripe.InvalidRequestError) as error:
        subscribe(api, bare, payment_behavior="error_if_incomplete")
    assert "no attached payment source" in error.value.user_message


def test_send_invoice_subscriptions_are_active_with_an_open_invoice_due_later(api, emu):
    cus = customer(api, emu, card=None)
    sub = subscribe(api, cus, collection_method="send_invoice", days_until_due=14)
    invoice = api.v1.invoices.retrieve(sub.latest_invoice)
    assert (sub.status, invoice.status, invoice.attempt_count) == ("active", "open", 0)
    assert invoice.due_date is not None
    with pytest.raises(stripe.InvalidRequestError) as error:
        subscribe(api, cus, collection_method="send_invoice")
    assert "days_until_due" in error.value.user_message


def test_parameters_the_sandbox_does_not_emulate_are_refused_not_dropped(api, emu):
    cus = customer(api, emu)
    for params, name in [({"automatic_tax": {"enabled": True}}, "automatic_tax"),
                         ({"add_invoice_items": [{"price": "price_sandbox_pro"}]}, "add_invoice_items"),
                         ({"items": [{"price": "price_sandbox_pro", "price_data": {"currency": "usd"}}]},
                          "items[0][price_data]")]:
        with pytest.raises(stripe.InvalidRequestError) as error:
            api.v1.subscriptions.create(params={"customer": cus, "items": [{"price": "price_sandbox_pro"}],
                                                **params})
        assert f"does not emulate `{name}`" in error.value.user_message
    sub = subscribe(api, cus)
    with pytest.raises(stripe.InvalidRequestError) as error:
        api.v1.subscriptions.update(sub.id, params={"collection_method": "send_invoice"})
    assert "does not emulate `collection_method`" in error.value.user_message


def pause(api, sub_id, **params):
    return api.raw_request("post", f"/v1/subscriptions/{sub_id}/pause", **params)


def test_pause_stops_billing_and_resume_on_payment_success_keeps_it_paused_until_paid(api, emu):
    cus = customer(api, emu)
    sub = subscribe(api, cus)
    start = len(emu.events)
    pause(api, sub.id, type="subscription")
    assert api.v1.subscriptions.retrieve(sub.id).status == "paused"
    assert types_since(emu, start) == ["customer.subscription.updated", "customer.subscription.paused"]
    emu.advance(days=45)
    assert api.v1.subscriptions.retrieve(sub.id).latest_invoice == sub.latest_invoice
    emu.set_card(cus, "decline")
    with pytest.raises(stripe.CardError):
        api.v1.subscriptions.resume(sub.id, params={"payment_behavior": "resume_on_payment_success"})
    assert api.v1.subscriptions.retrieve(sub.id).status == "paused"
    emu.set_card(cus, "succeed")
    resumed = api.v1.subscriptions.resume(sub.id, params={"payment_behavior": "resume_on_payment_success"})
    assert resumed.status == "active"
    for params, message in [({}, "Missing required param: type."), ({"type": "forever"}, "Invalid type"),
                            ({"type": "subscription", "bill_for": {"unused_time_from": {"type": "now"}}},
                             "does not emulate `bill_for`")]:
        with pytest.raises(stripe.InvalidRequestError) as error:
            pause(api, sub.id, **params)
        assert message in error.value.user_message
    canceled = api.v1.subscriptions.cancel(subscribe(api, cus).id)
    with pytest.raises(stripe.InvalidRequestError):
        pause(api, canceled.id, type="subscription")
