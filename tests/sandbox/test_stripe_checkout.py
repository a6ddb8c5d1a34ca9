"""Checkout in payment, setup and subscription modes through the real stripe library and the hosted page:
payment_intent_data, trials, discounts and promotion codes, phone number collection, portal configurations."""
import urllib.error
import urllib.parse
import urllib.request

import pytest
import stripe

from sandbox.stripe import StripeEmulator

from .test_stripe_shapes import assert_stripe_shape

API_KEY = "sk_test_checkout_modes"
OK = "https://console.test/ok?session={CHECKOUT_SESSION_ID}"


@pytest.fixture
def emu():
    with StripeEmulator(webhook_retry_seconds=0.01) as emulator:
        yield emulator


@pytest.fixture
def api(emu):
    return stripe.StripeClient(API_KEY, base_addresses={"api": emu.url}, max_network_retries=0)


def one_time_price(api, amount=2500):
    product = api.v1.products.create(params={"name": "Setup fee"})
    return api.v1.prices.create(params={"product": product.id, "unit_amount": amount, "currency": "usd"}).id


def post_form(url, fields):
    data = urllib.parse.urlencode(fields).encode()

    class NoRedirect(urllib.request.HTTPRedirectHandler):
        def redirect_request(self, *args, **kwargs):
            return None
    opener = urllib.request.build_opener(NoRedirect)
    try:
        with opener.open(urllib.request.Request(url, data=data), timeout=5) as answer:
            return answer.status, answer.read().decode(), answer.headers
    except urllib.error.HTTPError as error:
        return error.code, error.read().decode(), error.headers


def test_payment_mode_charges_a_payment_intent_with_its_data(api, emu):
    price = one_time_price(api)
    session = api.v1.checkout.sessions.create(params={
        "mode": "payment", "line_items": [{"price": price, "quantity": 2}], "success_url": OK,
        "customer_creation": "always",
        "payment_intent_data": {"description": "Two setup fees", "metadata": {"order": "42"}}})
    assert (session.payment_intent, session.amount_total, session.payment_status) == (None, 5000, "unpaid")
    status, body, _ = urllib.request.urlopen(session.url, timeout=5).status, None, None
    assert status == 200
    result = emu.pay_checkout(session.id, email="pay@example.com")
    assert result["ok"], result
    session = api.v1.checkout.sessions.retrieve(session.id)
    assert (session.status, session.payment_status) == ("complete", "paid")
    pi = api.v1.payment_intents.retrieve(session.payment_intent)
    assert (pi.status, pi.amount, pi.description, pi.metadata["order"]) == ("succeeded", 5000, "Two setup fees", "42")
    assert pi.customer == session.customer is not None
    types = [e["type"] for e in emu.events]
    assert "payment_intent.succeeded" in types and types[-1] == "checkout.session.completed" or \
        "checkout.session.completed" in types
    assert_stripe_shape(emu.get(session.id))


def test_payment_mode_declined_card_keeps_the_session_open(api, emu):
    session = api.v1.checkout.sessions.create(params={
        "mode": "payment", "line_items": [{"price": one_time_price(api)}], "success_url": OK})
    result = emu.pay_checkout(session.id, card="4000000000000002", email="no@example.com")
    assert not result["ok"] and "declined" in result["error"]
    assert api.v1.checkout.sessions.retrieve(session.id).status == "open"


def test_setup_mode_saves_the_card_on_the_customer(api, emu):
    customer = api.v1.customers.create(params={"email": "setup@example.com"})
    session = api.v1.checkout.sessions.create(params={
        "mode": "setup", "customer": customer.id, "currency": "usd", "success_url": OK})
    assert session.payment_status == "no_payment_required"
    status, page, _ = post_form(session.url, {"card": "4242 4242 4242 4242", "name": "Ada"})
    assert status == 303
    session = api.v1.checkout.sessions.retrieve(session.id)
    seti = api.v1.setup_intents.retrieve(session.setup_intent)
    assert seti.status == "succeeded"
    assert api.v1.payment_methods.retrieve(seti.payment_method).customer == customer.id
    assert "setup_intent.succeeded" in [e["type"] for e in emu.events]


def test_subscription_mode_with_a_trial_needs_no_payment_now(api, emu):
    session = api.v1.checkout.sessions.create(params={
        "mode": "subscription", "line_items": [{"price": "price_sandbox_pro"}], "success_url": OK,
        "customer_email": "trial@example.com", "subscription_data": {"trial_period_days": 14}})
    page = urllib.request.urlopen(session.url, timeout=5).read().decode()
    assert "14 days free" in page
    result = emu.pay_checkout(session.id)
    assert result["ok"], result
    sub = api.v1.subscriptions.retrieve(result["subscription"])
    assert sub.status == "trialing" and sub.trial_end - sub.trial_start == 14 * 86400
    assert api.v1.checkout.sessions.retrieve(session.id).payment_status == "no_payment_required"


def test_discounts_and_promotion_codes_lower_the_total_and_stay_on_the_subscription(api, emu):
    coupon = api.v1.coupons.create(params={"percent_off": 20, "duration": "forever"})
    session = api.v1.checkout.sessions.create(params={
        "mode": "subscription", "line_items": [{"price": "price_sandbox_pro"}], "success_url": OK,
        "customer_email": "coupon@example.com", "discounts": [{"coupon": coupon.id}]})
    assert (session.amount_subtotal, session.amount_total, session.total_details.amount_discount) == (900, 720, 180)
    result = emu.pay_checkout(session.id)
    sub = api.v1.subscriptions.retrieve(result["subscription"])
    assert len(sub.discounts) == 1
    assert api.v1.invoices.retrieve(result["invoice"]).amount_paid == 720

    other = api.v1.coupons.create(params={"amount_off": 500, "currency": "usd", "duration": "once"})
    api.v1.promotion_codes.create(params={"promotion": {"type": "coupon", "coupon": other.id}, "code": "SAVE5"})
    session = api.v1.checkout.sessions.create(params={
        "mode": "subscription", "line_items": [{"price": "price_sandbox_pro"}], "success_url": OK,
        "customer_email": "promo@example.com", "allow_promotion_codes": True})
    assert "Promotion code" in urllib.request.urlopen(session.url, timeout=5).read().decode()
    status, page, _ = post_form(session.url, {"card": "4242424242424242", "email": "promo@example.com",
                                              "promotion_code": "NOPE"})
    assert status == 200 and "This code is invalid." in page
    status, _, headers = post_form(session.url, {"card": "4242424242424242", "email": "promo@example.com",
                                                 "promotion_code": "save5"})
    assert status == 303
    session = api.v1.checkout.sessions.retrieve(session.id)
    assert session.amount_total == 400
    assert api.v1.invoices.retrieve(session.invoice).amount_paid == 400


def test_phone_number_collection_requires_and_keeps_the_phone(api, emu):
    session = api.v1.checkout.sessions.create(params={
        "mode": "subscription", "line_items": [{"price": "price_sandbox_pro"}], "success_url": OK,
        "phone_number_collection": {"enabled": True}})
    assert session.phone_number_collection.enabled is True
    assert emu.pay_checkout(session.id, email="tel@example.com")["error"] == "Your phone number is required."
    result = emu.pay_checkout(session.id, email="tel@example.com", phone="+15555550100")
    assert api.v1.customers.retrieve(result["customer"]).phone == "+15555550100"
    assert api.v1.checkout.sessions.retrieve(session.id).customer_details.phone == "+15555550100"


def test_checkout_modes_refuse_bad_input(api, emu):
    price = one_time_price(api)
    cases = [({"mode": "payment", "line_items": [{"price": "price_sandbox_pro"}], "success_url": OK},
              "recurring price"),
             ({"mode": "subscription", "line_items": [{"price": price}], "success_url": OK},
              "at least one recurring price"),
             ({"mode": "setup", "line_items": [{"price": price}], "success_url": OK}, "setup"),
             ({"mode": "donation", "success_url": OK}, "Invalid mode"),
             ({"mode": "payment", "line_items": [{"price": price}], "success_url": OK,
               "subscription_data": {"trial_period_days": 3}}, "subscription_data"),
             ({"mode": "payment", "line_items": [{"price": price}], "success_url": OK,
               "payment_intent_data": {"colour": "red"}}, "Received unknown parameter: payment_intent_data[colour]"),
             ({"mode": "subscription", "line_items": [{"price": "price_sandbox_pro"}], "success_url": OK,
               "discounts": [{"coupon": "nope"}]}, "No such coupon"),
             ({"mode": "payment", "line_items": [{"price": price, "colour": 1}], "success_url": OK},
              "Received unknown parameter: line_items[0][colour]"),
             ({"mode": "payment", "line_items": [{"price": price}], "success_url": OK,
               "payment_intent_data": {"receipt_email": "a@b.co"}},
              "does not emulate `payment_intent_data[receipt_email]`"),
             ({"mode": "payment", "line_items": [{"price": price}], "success_url": OK, "invoice_creation": {"enabled": True}},
              "does not emulate `invoice_creation`")]
    for params, message in cases:
        with pytest.raises(stripe.InvalidRequestError) as error:
            api.v1.checkout.sessions.create(params=params)
        assert message in error.value.user_message, params


def test_portal_configurations_and_session_events(api, emu):
    configuration = api.v1.billing_portal.configurations.create(params={
        "features": {"invoice_history": {"enabled": True}, "subscription_cancel": {"enabled": False}},
        "business_profile": {"headline": "Billing Console"}, "metadata": {"k": "v"}})
    assert configuration.is_default is False
    assert configuration.features.subscription_cancel.enabled is False
    listed = api.v1.billing_portal.configurations.list()
    assert {c.id for c in listed.data} == {configuration.id, "bpc_sandbox_default"}
    updated = api.v1.billing_portal.configurations.update(configuration.id, params={"active": False})
    assert updated.active is False
    customer = api.v1.customers.create(params={"email": "portal@example.com"})
    with pytest.raises(stripe.InvalidRequestError):
        api.v1.billing_portal.sessions.create(params={"customer": customer.id, "configuration": configuration.id})
    session = api.v1.billing_portal.sessions.create(params={"customer": customer.id})
    assert session.configuration == "bpc_sandbox_default"
    types = [e["type"] for e in emu.events]
    assert {"billing_portal.configuration.created", "billing_portal.configuration.updated",
            "billing_portal.session.created"} <= set(types)
    for bad, message in [({"features": {"coffee": {"enabled": True}}}, "features[coffee]"),
                         ({"features": {"invoice_history": {"enabled": True}}, "colour": 1},
                          "Received unknown parameter: colour"), ({}, "Missing required param: features.")]:
        with pytest.raises(stripe.InvalidRequestError) as error:
            api.v1.billing_portal.configurations.create(params=bad)
        assert message in error.value.user_message
    with pytest.raises(stripe.InvalidRequestError) as error:
        api.v1.billing_portal.configurations.retrieve("bpc_nope")
    assert error.value.http_status == 404
    assert_stripe_shape(emu.get(configuration.id))


def test_the_hosted_portal_follows_its_configuration(api, emu):
    session = api.v1.checkout.sessions.create(params={
        "mode": "subscription", "line_items": [{"price": "price_sandbox_pro"}], "success_url": OK,
        "customer_email": "conf@example.com"})
    result = emu.pay_checkout(session.id)
    locked = api.v1.billing_portal.configurations.create(params={"features": {
        "subscription_cancel": {"enabled": False}, "payment_method_update": {"enabled": False},
        "invoice_history": {"enabled": False}}})
    portal = api.v1.billing_portal.sessions.create(params={"customer": result["customer"],
                                                           "configuration": locked.id})
    page = urllib.request.urlopen(portal.url, timeout=5).read().decode()
    assert "Cancel subscription" not in page and "Update card" not in page and "Invoice history" not in page
    status, page, _ = post_form(portal.url, {"action": "cancel", "subscription": result["subscription"]})
    assert "cannot be changed here" in page
    assert api.v1.subscriptions.retrieve(result["subscription"]).cancel_at_period_end is False
    now = api.v1.billing_portal.configurations.create(params={"features": {
        "subscription_cancel": {"enabled": True, "mode": "immediately"}}})
    portal = api.v1.billing_portal.sessions.create(params={"customer": result["customer"], "configuration": now.id})
    assert "Cancel subscription" in urllib.request.urlopen(portal.url, timeout=5).read().decode()
    post_form(portal.url, {"action": "cancel", "subscription": result["subscription"]})
    assert api.v1.subscriptions.retrieve(result["subscription"]).status == "canceled"
