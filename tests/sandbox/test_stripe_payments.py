"""Payments in the Stripe sandbox through the real stripe library: payment methods and Stripe's magic test
values, customers' payment methods and sources, PaymentIntents and charges, refunds, disputes, SetupIntents,
and the invoice payments that go through the same PaymentIntents."""
import pytest
import stripe

from sandbox.stripe import StripeEmulator

from .test_stripe_shapes import assert_stripe_shape, every_object_and_event

API_KEY = "sk_test_payments"


@pytest.fixture
def emu():
    with StripeEmulator() as emulator:
        yield emulator


@pytest.fixture
def api(emu):
    return stripe.StripeClient(API_KEY, base_addresses={"api": emu.url}, max_network_retries=0)


def types_since(emu, start):
    return [e["type"] for e in emu.events[start:]]


def customer_with(api, pm="pm_card_visa"):
    return api.v1.customers.create(params={"email": "ada@example.com", "payment_method": pm,
                                           "invoice_settings": {"default_payment_method": pm}})


def pay(api, pm, **extra):
    return api.v1.payment_intents.create(params={"amount": 2000, "currency": "usd", "payment_method": pm,
                                                 "confirm": True, **extra})


# -- payment methods ---------------------------------------------------------------------------------
def test_create_a_card_payment_method_from_a_test_number_then_update_attach_and_detach(api, emu):
    pm = api.v1.payment_methods.create(params={
        "type": "card", "card": {"number": "5555 5555 5555 4444", "exp_month": 4, "exp_year": 2031, "cvc": "123"},
        "billing_details": {"name": "Ada", "address": {"country": "GB"}}, "metadata": {"k": "v"}})
    assert (pm.card.brand, pm.card.last4, pm.card.exp_year, pm.customer) == ("mastercard", "4444", 2031, None)
    assert pm.billing_details.name == "Ada" and pm.billing_details.address.country == "GB"

    updated = api.v1.payment_methods.update(pm.id, params={"card": {"exp_month": 9},
                                                           "billing_details": {"email": "ada@example.com"}})
    assert updated.card.exp_month == 9 and updated.billing_details.email == "ada@example.com"
    event = emu.events[-1]
    assert event["type"] == "payment_method.updated"
    assert event["data"]["previous_attributes"]["card"]["exp_month"] == 4

    customer = api.v1.customers.create(params={"email": "ada@example.com"})
    attached = api.v1.payment_methods.attach(pm.id, params={"customer": customer.id})
    assert attached.customer == customer.id and emu.events[-1]["type"] == "payment_method.attached"
    api.v1.customers.update(customer.id, params={"invoice_settings": {"default_payment_method": pm.id}})
    assert [p.id for p in api.v1.customers.payment_methods.list(customer.id)] == [pm.id]

    detached = api.v1.payment_methods.detach(pm.id)
    assert detached.customer is None
    assert types_since(emu, len(emu.events) - 2) == ["customer.updated", "payment_method.detached"]
    assert api.v1.customers.retrieve(customer.id).invoice_settings.default_payment_method is None
    with pytest.raises(stripe.InvalidRequestError) as again:
        api.v1.payment_methods.detach(pm.id)
    assert again.value.code == "payment_method_unexpected_state"


def test_magic_payment_method_ids_make_a_new_payment_method_each_time(api, emu):
    customer = api.v1.customers.create(params={"email": "ada@example.com"})
    first = api.v1.payment_methods.attach("pm_card_amex", params={"customer": customer.id})
    second = api.v1.payment_methods.attach("pm_card_visa", params={"customer": customer.id})
    assert first.id != "pm_card_amex" and first.card.brand == "amex" and second.card.brand == "visa"
    assert {p.id for p in api.v1.payment_methods.list(params={"customer": customer.id})} == {first.id, second.id}
    failing = api.v1.payment_methods.attach("pm_card_chargeCustomerFail", params={"customer": customer.id})
    assert failing.customer == customer.id  # attaches; its charges fail
    with pytest.raises(stripe.CardError) as declined:
        api.v1.payment_methods.attach("pm_card_chargeDeclined", params={"customer": customer.id})
    assert (declined.value.code, declined.value.error.decline_code) == ("card_declined", "generic_decline")


def test_payment_method_errors_are_stripes(api):
    with pytest.raises(stripe.CardError) as wrong:
        api.v1.payment_methods.create(params={"type": "card", "card": {"number": "4242424242424241",
                                                                       "exp_month": 1, "exp_year": 2030}})
    assert wrong.value.code == "incorrect_number"
    with pytest.raises(stripe.CardError) as live:
        api.v1.payment_methods.create(params={"type": "card", "card": {"number": "4111111111111111",
                                                                       "exp_month": 1, "exp_year": 2030}})
    assert live.value.error.decline_code == "test_mode_live_card"
    with pytest.raises(stripe.InvalidRequestError) as unknown:
        api.v1.payment_methods.retrieve("pm_nope")
    assert unknown.value.http_status == 404 and "No such PaymentMethod: 'pm_nope'" in str(unknown.value)
    with pytest.raises(stripe.InvalidRequestError) as typo:
        api.v1.payment_methods.update("pm_nope", params={"colour": "red"})
    assert "Received unknown parameter: colour" in str(typo.value)
    with pytest.raises(stripe.InvalidRequestError) as no_customer:
        api.v1.payment_methods.attach("pm_card_visa", params={"customer": "cus_nope"})
    assert no_customer.value.param == "customer"


# -- customers -----------------------------------------------------------------------------------------
def test_customer_create_honours_payment_method_default_and_source(api, emu):
    customer = customer_with(api)
    pm_id = customer.invoice_settings.default_payment_method
    assert pm_id.startswith("pm_") and pm_id != "pm_card_visa"
    assert api.v1.payment_methods.retrieve(pm_id).customer == customer.id
    assert types_since(emu, 0) == ["customer.created", "payment_method.attached"]

    with_source = api.v1.customers.create(params={"email": "grace@example.com", "source": "tok_mastercard"})
    assert with_source.default_source.startswith("card_")
    expanded = api.v1.customers.retrieve(with_source.id, params={"expand": ["sources"]})
    assert [c.last4 for c in expanded.sources.data] == ["4444"]
    source = api.v1.customers.payment_sources.retrieve(with_source.id, with_source.default_source)
    assert (source.object, source.brand, source.customer) == ("card", "MasterCard", with_source.id)
    added = api.v1.customers.update(customer.id, params={"source": "tok_visa"})
    assert added.default_source.startswith("card_")
    assert emu.events[-1]["type"] == "customer.updated"
    assert "customer.source.created" in types_since(emu, 0)


def test_customer_create_refuses_bad_payment_details_and_creates_nothing(api, emu):
    with pytest.raises(stripe.CardError) as declined:
        api.v1.customers.create(params={"email": "a@example.com", "source": "tok_chargeDeclined"})
    assert declined.value.code == "card_declined"
    with pytest.raises(stripe.CardError):
        api.v1.customers.create(params={"email": "a@example.com", "payment_method": "pm_card_chargeDeclined"})
    with pytest.raises(stripe.InvalidRequestError) as coupon:
        api.v1.customers.create(params={"email": "a@example.com", "coupon": "NOPE"})
    assert coupon.value.code == "resource_missing" and "No such coupon: 'NOPE'" in str(coupon.value)
    with pytest.raises(stripe.InvalidRequestError) as pm:
        api.v1.customers.create(params={"email": "a@example.com", "payment_method": "pm_nope"})
    assert pm.value.param == "payment_method"
    with pytest.raises(stripe.InvalidRequestError) as token:
        api.v1.customers.create(params={"email": "a@example.com", "source": "tok_nope"})
    assert "No such token: 'tok_nope'" in str(token.value)
    loose = api.v1.payment_methods.create(params={"type": "card", "card": {"token": "tok_visa"}})
    with pytest.raises(stripe.InvalidRequestError) as unattached:
        api.v1.customers.create(params={"invoice_settings": {"default_payment_method": loose.id}})
    assert "must be attached to the customer" in str(unattached.value)
    with pytest.raises(stripe.InvalidRequestError) as tax:
        api.v1.customers.create(params={"tax_id_data": [{"type": "eu_vat", "value": "DE123456789"}]})
    assert tax.value.param == "tax_id_data"
    assert emu.list_objects("customer") == []


# -- PaymentIntents and charges -------------------------------------------------------------------------
def test_a_payment_succeeds_with_its_charge_and_events(api, emu):
    customer = customer_with(api)
    start = len(emu.events)
    pi = pay(api, customer.invoice_settings.default_payment_method, customer=customer.id, off_session=True,
             metadata={"order": "42"})
    assert (pi.status, pi.amount_received) == ("succeeded", 2000)
    assert types_since(emu, start) == ["payment_intent.created", "charge.succeeded", "payment_intent.succeeded"]
    charge = api.v1.charges.retrieve(pi.latest_charge, params={"expand": ["balance_transaction"]})
    assert (charge.paid, charge.captured, charge.amount_captured, charge.payment_intent) == (True, True, 2000, pi.id)
    assert charge.metadata["order"] == "42" and charge.payment_method_details.card.last4 == "4242"
    assert charge.payment_method_details.card.three_d_secure is None and charge.billing_details.name is None
    assert charge.balance_transaction.fee == 88 and charge.balance_transaction.net == 1912  # 2.9% + 30
    assert [c.id for c in api.v1.charges.list(params={"customer": customer.id})] == [charge.id]
    assert [p.id for p in api.v1.payment_intents.list(params={"customer": customer.id})] == [pi.id]


def test_a_declined_payment_is_a_card_error_and_leaves_the_intent_retryable(api, emu):
    with pytest.raises(stripe.CardError) as declined:
        pay(api, "pm_card_chargeDeclinedInsufficientFunds")
    error = declined.value.error
    assert (error.code, error.decline_code) == ("card_declined", "insufficient_funds")
    pi = api.v1.payment_intents.retrieve(error.payment_intent.id)
    assert pi.status == "requires_payment_method" and pi.last_payment_error.decline_code == "insufficient_funds"
    assert api.v1.charges.retrieve(pi.latest_charge).status == "failed"
    assert types_since(emu, 0) == ["payment_intent.created", "charge.failed", "payment_intent.payment_failed"]
    retried = api.v1.payment_intents.confirm(pi.id, params={"payment_method": "pm_card_visa"})
    assert retried.status == "succeeded"


def test_a_card_that_attaches_then_fails_every_charge(api):
    customer = customer_with(api, "pm_card_chargeCustomerFail")
    with pytest.raises(stripe.CardError):
        pay(api, customer.invoice_settings.default_payment_method, customer=customer.id)


def test_manual_capture_authorizes_then_captures_part_and_releases_the_rest(api, emu):
    pi = pay(api, "pm_card_visa", capture_method="manual")
    assert (pi.status, pi.amount_capturable) == ("requires_capture", 2000)
    assert emu.events[-1]["type"] == "payment_intent.amount_capturable_updated"
    assert api.v1.charges.retrieve(pi.latest_charge).captured is False
    start = len(emu.events)
    captured = api.v1.payment_intents.capture(pi.id, params={"amount_to_capture": 1500})
    assert (captured.status, captured.amount_received) == ("succeeded", 1500)
    assert types_since(emu, start) == ["charge.captured", "payment_intent.succeeded"]
    charge = api.v1.charges.retrieve(pi.latest_charge)
    assert (charge.captured, charge.amount_captured, charge.amount_refunded) == (True, 1500, 500)
    with pytest.raises(stripe.InvalidRequestError) as twice:
        api.v1.payment_intents.capture(pi.id)
    assert twice.value.code == "payment_intent_unexpected_state"

    held = pay(api, "pm_card_visa", capture_method="manual")
    canceled = api.v1.payment_intents.cancel(held.id, params={"cancellation_reason": "abandoned"})
    assert (canceled.status, canceled.cancellation_reason) == ("canceled", "abandoned")
    assert emu.events[-2]["type"] == "charge.refunded" and emu.events[-1]["type"] == "payment_intent.canceled"
    with pytest.raises(stripe.InvalidRequestError):
        api.v1.payment_intents.cancel(held.id)


def test_three_d_secure_cards_need_action_then_complete_or_fail(api, emu):
    for card in ("pm_card_authenticationRequired", "pm_card_threeDSecure2Required"):
        pi = pay(api, card)
        assert pi.status == "requires_action" and pi.next_action.type == "use_stripe_sdk"
        assert emu.events[-1]["type"] == "payment_intent.requires_action"
        done = emu.authenticate(pi.id)
        assert done["status"] == "succeeded" and emu.events[-1]["type"] == "payment_intent.succeeded"
        details = api.v1.charges.retrieve(done["latest_charge"]).payment_method_details.card
        assert details.three_d_secure.result == "authenticated"

    failing = pay(api, "pm_card_authenticationRequired")
    failed = emu.authenticate(failing.id, "fail")
    assert failed["status"] == "requires_payment_method"
    assert failed["last_payment_error"]["code"] == "payment_intent_authentication_failure"
    with pytest.raises(stripe.CardError) as off_session:
        pay(api, "pm_card_authenticationRequired", off_session=True)
    assert off_session.value.code == "authentication_required"


def test_payment_intent_errors_are_stripes(api):
    with pytest.raises(stripe.InvalidRequestError) as small:
        api.v1.payment_intents.create(params={"amount": 10, "currency": "usd"})
    assert small.value.code == "amount_too_small"
    with pytest.raises(stripe.InvalidRequestError) as missing:
        api.v1.payment_intents.create(params={"currency": "usd"})
    assert missing.value.param == "amount"
    pending = api.v1.payment_intents.create(params={"amount": 500, "currency": "usd"})
    assert pending.status == "requires_payment_method" and pending.client_secret.startswith(pending.id + "_secret_")
    with pytest.raises(stripe.InvalidRequestError) as no_pm:
        api.v1.payment_intents.confirm(pending.id)
    assert "missing a payment method" in str(no_pm.value)
    updated = api.v1.payment_intents.update(pending.id, params={"amount": 700, "metadata": {"a": "b"}})
    assert updated.amount == 700
    with pytest.raises(stripe.InvalidRequestError) as unknown:
        api.v1.payment_intents.retrieve("pi_nope")
    assert unknown.value.http_status == 404 and unknown.value.code == "resource_missing"
    with pytest.raises(stripe.InvalidRequestError) as typo:
        api.v1.payment_intents.create(params={"amount": 500, "currency": "usd", "amout": 1})
    assert "Received unknown parameter: amout" in str(typo.value)
    with pytest.raises(stripe.InvalidRequestError):
        api.v1.charges.retrieve("ch_nope")


# -- refunds ----------------------------------------------------------------------------------------------
def test_partial_then_full_refund(api, emu):
    pi = pay(api, "pm_card_visa")
    start = len(emu.events)
    part = api.v1.refunds.create(params={"payment_intent": pi.id, "amount": 500, "reason": "requested_by_customer"})
    assert (part.status, part.amount, part.charge) == ("succeeded", 500, pi.latest_charge)
    assert types_since(emu, start) == ["charge.refunded", "refund.created"]
    charge = api.v1.charges.retrieve(pi.latest_charge)
    assert (charge.amount_refunded, charge.refunded) == (500, False)
    with pytest.raises(stripe.InvalidRequestError) as too_much:
        api.v1.refunds.create(params={"charge": charge.id, "amount": 1600})
    assert "greater than unrefunded amount on charge ($15.00)" in str(too_much.value)
    rest = api.v1.refunds.create(params={"charge": charge.id})
    assert rest.amount == 1500 and api.v1.charges.retrieve(charge.id).refunded is True
    with pytest.raises(stripe.InvalidRequestError) as done:
        api.v1.refunds.create(params={"charge": charge.id})
    assert done.value.code == "charge_already_refunded"
    assert [r.id for r in api.v1.refunds.list(params={"charge": charge.id})] == [rest.id, part.id]

    start = len(emu.events)
    api.v1.refunds.update(part.id, params={"metadata": {"ticket": "7"}})
    assert types_since(emu, start) == ["refund.updated", "charge.refund.updated"]
    with pytest.raises(stripe.InvalidRequestError):
        api.v1.refunds.cancel(part.id)
    with pytest.raises(stripe.InvalidRequestError) as unknown:
        api.v1.refunds.retrieve("re_nope")
    assert unknown.value.http_status == 404


def test_refund_of_a_failed_charge_is_refused(api):
    with pytest.raises(stripe.CardError) as declined:
        pay(api, "pm_card_chargeDeclined")
    with pytest.raises(stripe.InvalidRequestError) as refused:
        api.v1.refunds.create(params={"charge": declined.value.error.charge})
    assert refused.value.code == "charge_not_refundable"
    with pytest.raises(stripe.InvalidRequestError) as neither:
        api.v1.refunds.create(params={"amount": 100})
    assert neither.value.code == "parameter_missing"


def test_refund_fail_card_refund_fails_a_minute_later(api, emu):
    pi = pay(api, "pm_card_refundFail")
    refund = api.v1.refunds.create(params={"payment_intent": pi.id})
    assert refund.status == "succeeded"
    start = len(emu.events)
    emu.advance(seconds=61)
    assert types_since(emu, start) == ["refund.updated", "charge.refund.updated", "refund.failed", "charge.updated"]
    failed = api.v1.refunds.retrieve(refund.id)
    assert (failed.status, failed.failure_reason) == ("failed", "expired_or_canceled_card")
    charge = api.v1.charges.retrieve(pi.latest_charge)
    assert (charge.amount_refunded, charge.refunded) == (0, False)


# -- disputes ----------------------------------------------------------------------------------------------
def test_dispute_card_opens_a_dispute_that_winning_evidence_wins(api, emu):
    pi = pay(api, "pm_card_createDispute")
    assert types_since(emu, 0)[-3:] == ["charge.dispute.created", "charge.dispute.funds_withdrawn", "charge.updated"]
    dispute = api.v1.disputes.list(params={"charge": pi.latest_charge}).data[0]
    assert (dispute.status, dispute.reason, dispute.amount) == ("needs_response", "fraudulent", 2000)
    assert dispute.balance_transactions[0].amount == -2000 and dispute.balance_transactions[0].fee == 1500
    assert api.v1.charges.retrieve(pi.latest_charge).disputed is True
    with pytest.raises(stripe.InvalidRequestError) as refund:
        api.v1.refunds.create(params={"charge": pi.latest_charge})
    assert refund.value.code == "charge_disputed"

    start = len(emu.events)
    won = api.v1.disputes.update(dispute.id, params={"evidence": {"uncategorized_text": "winning_evidence"},
                                                     "submit": True})
    assert won.status == "won"
    assert types_since(emu, start) == ["charge.dispute.updated", "charge.dispute.closed",
                                       "charge.dispute.funds_reinstated"]
    with pytest.raises(stripe.InvalidRequestError):
        api.v1.disputes.update(dispute.id, params={"metadata": {"a": "b"}})
    with pytest.raises(stripe.InvalidRequestError) as bad:
        api.v1.disputes.update(dispute.id, params={"evidence": {"colour": "red"}})
    assert bad.value.param in ("evidence", "evidence[colour]")


def test_closing_a_dispute_accepts_it_as_lost(api, emu):
    pi = pay(api, "pm_card_createDispute")
    dispute = api.v1.disputes.list().data[0]
    updated = api.v1.disputes.update(dispute.id, params={"evidence": {"customer_name": "Ada"}, "submit": False,
                                                         "metadata": {"case": "1"}})
    assert updated.status == "needs_response" and updated.evidence.customer_name == "Ada"
    closed = api.v1.disputes.close(dispute.id)
    assert closed.status == "lost" and emu.events[-1]["type"] == "charge.dispute.closed"
    assert api.v1.disputes.retrieve(dispute.id).charge == pi.latest_charge
    with pytest.raises(stripe.InvalidRequestError):
        api.v1.disputes.close(dispute.id)
    with pytest.raises(stripe.InvalidRequestError) as unknown:
        api.v1.disputes.retrieve("dp_nope")
    assert unknown.value.http_status == 404


# -- SetupIntents ------------------------------------------------------------------------------------------
def test_setup_intent_saves_a_card_on_the_customer(api, emu):
    customer = api.v1.customers.create(params={"email": "ada@example.com"})
    seti = api.v1.setup_intents.create(params={"customer": customer.id, "payment_method": "pm_card_visa",
                                               "confirm": True, "usage": "off_session"})
    assert seti.status == "succeeded"
    assert api.v1.payment_methods.retrieve(seti.payment_method).customer == customer.id
    assert types_since(emu, 1) == ["setup_intent.created", "payment_method.attached", "setup_intent.succeeded"]

    later = api.v1.setup_intents.create(params={"customer": customer.id})
    assert later.status == "requires_payment_method"
    api.v1.setup_intents.update(later.id, params={"metadata": {"a": "b"}})
    assert emu.events[-1]["type"] == "setup_intent.updated"
    confirmed = api.v1.setup_intents.confirm(later.id, params={"payment_method": "pm_card_mastercard"})
    assert confirmed.status == "succeeded"
    assert [s.id for s in api.v1.setup_intents.list(params={"customer": customer.id})] == [later.id, seti.id]


def test_setup_intent_failures_actions_and_cancel(api, emu):
    customer = api.v1.customers.create(params={"email": "ada@example.com"})
    with pytest.raises(stripe.CardError) as declined:
        api.v1.setup_intents.create(params={"customer": customer.id, "payment_method": "pm_card_chargeDeclined",
                                            "confirm": True})
    assert emu.events[-1]["type"] == "setup_intent.setup_failed"
    failed = api.v1.setup_intents.retrieve(declined.value.error.setup_intent.id)
    assert failed.status == "requires_payment_method" and failed.last_setup_error.code == "card_declined"

    three_ds = api.v1.setup_intents.create(params={"customer": customer.id, "confirm": True,
                                                   "payment_method": "pm_card_authenticationRequired"})
    assert three_ds.status == "requires_action" and emu.events[-1]["type"] == "setup_intent.requires_action"
    assert emu.authenticate(three_ds.id)["status"] == "succeeded"

    pending = api.v1.setup_intents.create(params={"customer": customer.id})
    canceled = api.v1.setup_intents.cancel(pending.id, params={"cancellation_reason": "abandoned"})
    assert canceled.status == "canceled" and emu.events[-1]["type"] == "setup_intent.canceled"
    with pytest.raises(stripe.InvalidRequestError):
        api.v1.setup_intents.confirm(pending.id, params={"payment_method": "pm_card_visa"})
    with pytest.raises(stripe.InvalidRequestError) as typo:
        api.v1.setup_intents.create(params={"custmer": customer.id})
    assert "Received unknown parameter: custmer" in str(typo.value)
    with pytest.raises(stripe.InvalidRequestError) as unknown:
        api.v1.setup_intents.retrieve("seti_nope")
    assert unknown.value.http_status == 404 and "No such setupintent: 'seti_nope'" in str(unknown.value)


# -- products, prices, plans -----------------------------------------------------------------------------
def test_products_and_prices_update_archive_and_delete_with_events(api, emu):
    product = api.v1.products.update("prod_sandbox_pro", params={"name": "Pro+", "metadata": {"tier": "2"}})
    assert product.name == "Pro+" and emu.events[-1]["type"] == "product.updated"
    assert emu.events[-1]["data"]["previous_attributes"]["name"] == "Billing Console Pro"
    with pytest.raises(stripe.InvalidRequestError) as has_prices:
        api.v1.products.delete("prod_sandbox_pro")
    assert "has one or more user-created prices" in str(has_prices.value)
    with pytest.raises(stripe.InvalidRequestError) as default:
        api.v1.prices.update("price_sandbox_pro", params={"active": False})
    assert "default price" in str(default.value)

    extra = api.v1.prices.create(params={"product": "prod_sandbox_pro", "unit_amount": 9000, "currency": "usd",
                                         "recurring": {"interval": "year"}, "lookup_key": "pro_yearly"})
    archived = api.v1.prices.update(extra.id, params={"active": False, "nickname": "Yearly"})
    assert archived.active is False and emu.events[-2]["type"] == "price.updated"
    assert emu.events[-1]["type"] == "plan.updated"
    second = api.v1.prices.create(params={"product": "prod_sandbox_pro", "unit_amount": 8000, "currency": "usd",
                                          "recurring": {"interval": "year"}})
    with pytest.raises(stripe.InvalidRequestError):
        api.v1.prices.update(second.id, params={"lookup_key": "pro_yearly"})
    moved = api.v1.prices.update(second.id, params={"lookup_key": "pro_yearly", "transfer_lookup_key": True})
    assert moved.lookup_key == "pro_yearly" and api.v1.prices.retrieve(extra.id).lookup_key is None

    lonely = api.v1.products.create(params={"name": "Lonely"})
    start = len(emu.events)
    gone = api.v1.products.delete(lonely.id)
    assert gone.deleted is True and types_since(emu, start) == ["product.deleted"]
    with pytest.raises(stripe.InvalidRequestError):
        api.v1.products.retrieve(lonely.id)
    with pytest.raises(stripe.InvalidRequestError) as typo:
        api.v1.prices.update(second.id, params={"unit_amount": 5})
    assert "Received unknown parameter: unit_amount" in str(typo.value)


def test_legacy_plans_create_update_and_delete_their_price(api, emu):
    plan = api.v1.plans.create(params={"id": "gold", "amount": 1500, "currency": "usd", "interval": "month",
                                       "product": {"name": "Gold"}, "trial_period_days": 14})
    assert (plan.id, plan.amount, plan.trial_period_days) == ("gold", 1500, 14)
    assert api.v1.prices.retrieve("gold").unit_amount == 1500
    assert types_since(emu, 0) == ["product.created", "plan.created", "price.created"]
    updated = api.v1.plans.update("gold", params={"nickname": "Gold monthly"})
    assert updated.nickname == "Gold monthly" and types_since(emu, 3) == ["plan.updated", "price.updated"]
    assert "gold" in [p.id for p in api.v1.plans.list(params={"product": plan.product})]
    deleted = api.v1.plans.delete("gold")
    assert deleted.deleted is True and types_since(emu, 5) == ["plan.deleted", "price.deleted"]
    with pytest.raises(stripe.InvalidRequestError) as gone:
        api.v1.plans.retrieve("gold")
    assert "No such plan: 'gold'" in str(gone.value)
    with pytest.raises(stripe.InvalidRequestError):
        api.v1.plans.create(params={"amount": 100, "currency": "usd", "interval": "fortnight", "product": "prod_x"})


# -- shapes --------------------------------------------------------------------------------------------------
def test_every_payment_object_and_event_has_stripes_shape(api, emu):
    customer = customer_with(api)
    api.v1.customers.update(customer.id, params={"source": "tok_visa"})
    paid = pay(api, customer.invoice_settings.default_payment_method, customer=customer.id)
    api.v1.refunds.create(params={"payment_intent": paid.id, "amount": 100})
    pay(api, "pm_card_createDispute")
    with pytest.raises(stripe.CardError):
        pay(api, "pm_card_chargeDeclined")
    pay(api, "pm_card_authenticationRequired")
    api.v1.setup_intents.create(params={"customer": customer.id, "payment_method": "pm_card_visa", "confirm": True})
    api.v1.plans.create(params={"amount": 100, "currency": "usd", "interval": "month", "product": "prod_sandbox_pro"})
    objects, events = every_object_and_event(emu)
    assert {o["object"] for o in objects} >= {"payment_intent", "charge", "refund", "dispute", "setup_intent",
                                              "balance_transaction", "card", "payment_method"}
    for obj in objects:
        assert_stripe_shape(obj)
    for event in events:
        assert_stripe_shape(event)
        assert_stripe_shape(event["data"]["object"], f"{event['type']}: ")


# -- invoices are paid through the same PaymentIntents ------------------------------------------------------
def subscribe(api, emu):
    session = api.v1.checkout.sessions.create(params={
        "mode": "subscription", "line_items": [{"price": "price_sandbox_pro"}],
        "customer_email": "ada@example.com", "success_url": "https://console.test/ok"})
    result = emu.pay_checkout(session.id)
    assert result["ok"]
    return result


def invoice_intent(api, invoice_id):
    payments = api.v1.invoice_payments.list(params={"invoice": invoice_id})
    assert len(payments.data) == 1 and payments.data[0].payment.type == "payment_intent"
    return api.v1.payment_intents.retrieve(payments.data[0].payment.payment_intent), payments.data[0]


def test_checkout_and_renewals_charge_through_a_payment_intent_per_invoice(api, emu):
    result = subscribe(api, emu)
    pi, payment = invoice_intent(api, result["invoice"])
    assert (pi.status, pi.amount_received, pi.customer, payment.status) == \
        ("succeeded", 900, result["customer"], "paid")
    assert pi.description == "Subscription creation"
    expanded = api.v1.invoices.retrieve(result["invoice"], params={"expand": ["payments"]})
    assert expanded.payments.data[0].id == payment.id

    emu.set_card(result["customer"], card="4000000000000341")  # pm_card_chargeCustomerFail
    emu.advance(days=31)
    sub = api.v1.subscriptions.retrieve(result["subscription"])
    assert sub.status == "past_due"
    renewal, _ = invoice_intent(api, sub.latest_invoice)
    assert renewal.status == "requires_payment_method" and renewal.last_payment_error.code == "card_declined"
    assert api.v1.charges.retrieve(renewal.latest_charge).status == "failed"

    emu.set_card(result["customer"], card="4242424242424242")
    paid = api.v1.invoices.pay(sub.latest_invoice)
    assert paid.status == "paid"
    retried, payment = invoice_intent(api, sub.latest_invoice)  # the same PaymentIntent, a second charge
    assert (retried.id, retried.status, payment.status) == (renewal.id, "succeeded", "paid")
    assert len(api.v1.charges.list(params={"payment_intent": retried.id}).data) == 2
    assert api.v1.subscriptions.retrieve(sub.id).status == "active"


def test_a_renewal_on_a_three_d_secure_card_needs_action_until_the_customer_authenticates(api, emu):
    result = subscribe(api, emu)
    emu.set_card(result["customer"], card="4000002760003184")  # pm_card_authenticationRequired
    start = len(emu.events)
    emu.advance(days=31)
    types = types_since(emu, start)
    assert "payment_intent.requires_action" in types and "invoice.payment_action_required" in types
    assert "charge.failed" not in types and "charge.succeeded" not in types
    sub = api.v1.subscriptions.retrieve(result["subscription"])
    pi, _ = invoice_intent(api, sub.latest_invoice)
    assert pi.status == "requires_action" and api.v1.invoices.retrieve(sub.latest_invoice).status == "open"

    emu.authenticate(pi.id)
    assert api.v1.payment_intents.retrieve(pi.id).status == "succeeded"
    assert api.v1.invoices.retrieve(sub.latest_invoice).status == "paid"
    assert api.v1.subscriptions.retrieve(sub.id).status == "active"
    assert {"charge.succeeded", "invoice.paid"} <= set(types_since(emu, start))


def test_a_renewal_on_the_dispute_card_is_paid_then_disputed(api, emu):
    result = subscribe(api, emu)
    emu.set_card(result["customer"], card="4000000000000259")  # pm_card_createDispute
    start = len(emu.events)
    emu.advance(days=31)
    types = types_since(emu, start)
    assert types.index("charge.succeeded") < types.index("charge.dispute.created") and "invoice.paid" in types
    sub = api.v1.subscriptions.retrieve(result["subscription"])
    pi, _ = invoice_intent(api, sub.latest_invoice)
    assert api.v1.disputes.list(params={"payment_intent": pi.id}).data[0].status == "needs_response"


def test_payments_survive_a_restart_and_idempotency_replays_a_decline(tmp_path):
    state = tmp_path / "stripe.json"
    with StripeEmulator(state_path=state) as emu:
        api = stripe.StripeClient(API_KEY, base_addresses={"api": emu.url}, max_network_retries=0)
        paid = pay(api, "pm_card_refundFail")
        refund = api.v1.refunds.create(params={"payment_intent": paid.id})
        params = {"amount": 2000, "currency": "usd", "payment_method": "pm_card_chargeDeclined", "confirm": True}
        with pytest.raises(stripe.CardError) as first:
            api.v1.payment_intents.create(params=params, options={"idempotency_key": "order-1"})
        with pytest.raises(stripe.CardError) as replay:
            api.v1.payment_intents.create(params=params, options={"idempotency_key": "order-1"})
        assert replay.value.error.payment_intent.id == first.value.error.payment_intent.id
        assert len(emu.list_objects("payment_intent")) == 2
    with StripeEmulator(state_path=state) as emu:
        api = stripe.StripeClient(API_KEY, base_addresses={"api": emu.url}, max_network_retries=0)
        assert emu.restored and api.v1.payment_intents.retrieve(paid.id).status == "succeeded"
        assert api.v1.charges.retrieve(paid.latest_charge).refunded is True
        emu.advance(seconds=61)  # the refund failure scheduled before the restart still happens
        assert api.v1.refunds.retrieve(refund.id).status == "failed"


def test_hosted_invoice_page_pays_with_a_three_d_secure_card_the_customer_completes(api, emu):
    import urllib.parse
    import urllib.request

    result = subscribe(api, emu)
    emu.set_card(result["customer"], "decline")
    emu.advance(days=31)
    invoice = api.v1.invoices.retrieve(api.v1.subscriptions.retrieve(result["subscription"]).latest_invoice)
    assert invoice.status == "open"
    form = urllib.parse.urlencode({"card": "4000 0027 6000 3184"}).encode()
    with urllib.request.urlopen(urllib.request.Request(invoice.hosted_invoice_url, data=form), timeout=10) as page:
        assert page.status == 200
    assert api.v1.invoices.retrieve(invoice.id).status == "paid"
    pi, _ = invoice_intent(api, invoice.id)
    assert pi.status == "succeeded" and api.v1.charges.retrieve(pi.latest_charge).payment_method_details.card.last4 \
        == "3184"


def test_voiding_an_unpaid_invoice_cancels_its_payment_intent(api, emu):
    result = subscribe(api, emu)
    emu.set_card(result["customer"], "decline")
    emu.advance(days=31)
    invoice_id = api.v1.subscriptions.retrieve(result["subscription"]).latest_invoice
    start = len(emu.events)
    api.v1.invoices.void_invoice(invoice_id)
    pi, payment = invoice_intent(api, invoice_id)
    assert (pi.status, pi.cancellation_reason, payment.status) == ("canceled", "void_invoice", "canceled")
    assert types_since(emu, start)[:2] == ["payment_intent.canceled", "invoice.voided"]


def test_search_charges_and_payment_intents_and_delete_a_source_card(api, emu):
    customer = customer_with(api)
    paid = pay(api, customer.invoice_settings.default_payment_method, customer=customer.id)
    with pytest.raises(stripe.CardError):
        pay(api, "pm_card_chargeDeclined")
    found = api.v1.charges.search(params={"query": f"customer:'{customer.id}' AND status:'succeeded'"})
    assert [c.id for c in found.data] == [paid.latest_charge]
    failed = api.v1.payment_intents.search(params={"query": "status:'requires_payment_method'"})
    assert len(failed.data) == 1 and failed.data[0].id != paid.id

    updated = api.v1.customers.update(customer.id, params={"source": "tok_amex"})
    card = updated.default_source
    deleted = api.v1.customers.payment_sources.delete(customer.id, card)
    assert deleted.deleted is True
    assert api.v1.customers.retrieve(customer.id).default_source is None
    assert types_since(emu, len(emu.events) - 2) == ["customer.source.deleted", "customer.updated"]
    with pytest.raises(stripe.InvalidRequestError) as gone:
        api.v1.customers.payment_sources.retrieve(customer.id, card)
    assert "No such source" in str(gone.value)


def test_a_customer_with_only_a_source_card_is_charged_on_it(api, emu):
    customer = api.v1.customers.create(params={"email": "old@example.com", "source": "tok_visa"})
    sub = api.v1.subscriptions.create(params={"customer": customer.id, "items": [{"price": "price_sandbox_pro"}]})
    assert sub.status == "active"
    pi, _ = invoice_intent(api, sub.latest_invoice)
    assert pi.status == "succeeded" and pi.payment_method == customer.default_source
    charge = api.v1.charges.retrieve(pi.latest_charge)
    assert charge.payment_method == customer.default_source and charge.payment_method_details.card.last4 == "4242"
    as_pm = api.v1.payment_methods.retrieve(customer.default_source)
    assert (as_pm.object, as_pm.type, as_pm.card.brand, as_pm.customer) == ("payment_method", "card", "visa",
                                                                             customer.id)
