"""dj-stripe 2.11 accepts what the Stripe sandbox serves: its event processing re-reads every object
from the emulator (with the `expand` values it asks for) and syncs it into its models."""
import pytest
import stripe
from djstripe import models as djstripe_models

from sandbox.stripe import StripeEmulator

API_KEY = "sk_test_" + "Sandbox0123456789abcdefgh"

pytestmark = pytest.mark.django_db


@pytest.fixture
def emu(settings, monkeypatch):
    with StripeEmulator() as emulator:
        monkeypatch.setattr(stripe, "api_base", emulator.url)  # what STRIPE_API_HOST does
        settings.STRIPE_SECRET_KEY = settings.STRIPE_TEST_SECRET_KEY = API_KEY
        settings.STRIPE_LIVE_MODE = False
        yield emulator


def process_events(emu, start=0):
    """Apply events the way dj-stripe's webhook processing does (Event.process re-reads objects)."""
    for event in emu.events[start:]:
        djstripe_models.Event.process(data=event, api_key=API_KEY)
    return len(emu.events)


def checkout(emu):
    api = stripe.StripeClient(API_KEY, base_addresses={"api": emu.url}, max_network_retries=0)
    session = api.v1.checkout.sessions.create(params={
        "mode": "subscription", "line_items": [{"price": "price_sandbox_pro", "quantity": 1}],
        "customer_email": "ada@example.com", "client_reference_id": "tok",
        "subscription_data": {"metadata": {"attempt": "tok"}},
        "success_url": "https://console.test/thanks", "cancel_url": "https://console.test/pricing"})
    result = emu.pay_checkout(session.id)
    assert result["ok"]
    return session, result


def test_djstripe_processes_every_checkout_event_against_the_sandbox(emu):
    session, result = checkout(emu)
    process_events(emu)

    assert djstripe_models.Account.objects.get().id == "acct_sandbox"
    customer = djstripe_models.Customer.objects.get(id=result["customer"])
    assert customer.email == "ada@example.com"
    sub = djstripe_models.Subscription.objects.get(id=result["subscription"])
    assert sub.status == "active" and sub.customer == customer
    assert sub.current_period_end > sub.current_period_start
    assert sub.stripe_data["metadata"] == {"attempt": "tok"}
    assert sub.items.get().price.id == "price_sandbox_pro"
    invoice = djstripe_models.Invoice.objects.get(id=result["invoice"])
    assert invoice.status == "paid" and invoice.subscription == sub and invoice.total == 900
    assert djstripe_models.Session.objects.get(id=session.id).stripe_data["payment_status"] == "paid"
    assert djstripe_models.PaymentMethod.objects.get(customer=customer).stripe_data["card"]["last4"] == "4242"
    assert djstripe_models.Price.objects.get(id="price_sandbox_pro").product.name == "Billing Console Pro"
    assert djstripe_models.Event.objects.count() == len(emu.events)


def test_djstripe_follows_a_failed_renewal_to_cancellation(emu):
    _, result = checkout(emu)
    seen = process_events(emu)
    emu.set_card(result["customer"], "decline")
    emu.advance(days=31)
    seen = process_events(emu, seen)
    sub = djstripe_models.Subscription.objects.get(id=result["subscription"])
    assert sub.status == "past_due"
    emu.advance(days=8)
    process_events(emu, seen)
    sub.refresh_from_db()
    assert sub.status == "canceled"
    failed = djstripe_models.Invoice.objects.get(id=sub.stripe_data["latest_invoice"])
    assert failed.status == "uncollectible"


def test_djstripe_sync_from_stripe_data_accepts_expanded_retrievals(emu):
    _, result = checkout(emu)
    stripe.api_key = API_KEY
    try:
        invoice = stripe.Invoice.retrieve(result["invoice"], expand=djstripe_models.Invoice.expand_fields)
        assert djstripe_models.Invoice.sync_from_stripe_data(invoice, api_key=API_KEY).status == "paid"
        customer = stripe.Customer.retrieve(result["customer"], expand=djstripe_models.Customer.expand_fields)
        assert djstripe_models.Customer.sync_from_stripe_data(customer, api_key=API_KEY).email == "ada@example.com"
    finally:
        stripe.api_key = None


PAYMENT_EVENTS = {
    "payment_intent.created", "payment_intent.succeeded", "payment_intent.payment_failed",
    "payment_intent.requires_action", "payment_intent.canceled", "payment_intent.amount_capturable_updated",
    "payment_intent.updated", "charge.succeeded", "charge.failed", "charge.captured", "charge.refunded",
    "charge.updated", "charge.refund.updated", "refund.created", "refund.updated", "refund.failed",
    "charge.dispute.created", "charge.dispute.updated", "charge.dispute.closed", "charge.dispute.funds_withdrawn",
    "charge.dispute.funds_reinstated", "setup_intent.created", "setup_intent.succeeded",
    "setup_intent.setup_failed", "setup_intent.requires_action", "setup_intent.canceled", "setup_intent.updated",
    "payment_method.attached", "payment_method.detached", "payment_method.updated", "customer.source.created",
    "customer.source.deleted",
    "product.updated", "product.deleted", "price.updated", "price.deleted", "plan.created", "plan.updated",
    "plan.deleted",
}


def test_djstripe_processes_every_payment_event(emu):
    api = stripe.StripeClient(API_KEY, base_addresses={"api": emu.url}, max_network_retries=0)
    customer = api.v1.customers.create(params={"email": "ada@example.com", "payment_method": "pm_card_visa",
                                               "invoice_settings": {"default_payment_method": "pm_card_visa"},
                                               "source": "tok_visa"})
    pm_id = customer.invoice_settings.default_payment_method

    def pay(pm, **extra):
        return api.v1.payment_intents.create(params={"amount": 2000, "currency": "usd", "payment_method": pm,
                                                     "customer": customer.id, "confirm": True, **extra})

    paid = pay(pm_id)
    api.v1.refunds.create(params={"payment_intent": paid.id, "amount": 500})
    api.v1.refunds.update(api.v1.refunds.list().data[0].id, params={"metadata": {"k": "v"}})
    failing_refund = pay("pm_card_refundFail")
    api.v1.refunds.create(params={"payment_intent": failing_refund.id})
    with pytest.raises(stripe.CardError):
        pay("pm_card_chargeDeclined")
    held = pay(pm_id, capture_method="manual")
    api.v1.payment_intents.capture(held.id)
    released = pay(pm_id, capture_method="manual")
    api.v1.payment_intents.cancel(released.id)
    needs_action = pay("pm_card_authenticationRequired")
    api.v1.payment_intents.update(needs_action.id, params={"metadata": {"k": "v"}})
    emu.authenticate(needs_action.id)
    pay("pm_card_createDispute")
    pay("pm_card_createDispute")
    won, lost = api.v1.disputes.list().data
    api.v1.disputes.update(won.id, params={"evidence": {"uncategorized_text": "winning_evidence"}})
    api.v1.disputes.close(lost.id)
    api.v1.setup_intents.create(params={"customer": customer.id, "payment_method": "pm_card_visa", "confirm": True})
    with pytest.raises(stripe.CardError):
        api.v1.setup_intents.create(params={"customer": customer.id, "payment_method": "pm_card_chargeDeclined",
                                            "confirm": True})
    api.v1.setup_intents.create(params={"customer": customer.id, "confirm": True,
                                        "payment_method": "pm_card_authenticationRequired"})
    pending = api.v1.setup_intents.create(params={"customer": customer.id})
    api.v1.setup_intents.update(pending.id, params={"metadata": {"k": "v"}})
    api.v1.setup_intents.cancel(pending.id)
    api.v1.payment_methods.update(pm_id, params={"billing_details": {"name": "Ada"}})
    spare = api.v1.payment_methods.attach("pm_card_mastercard", params={"customer": customer.id})
    api.v1.payment_methods.detach(spare.id)
    api.v1.customers.payment_sources.delete(customer.id, customer.default_source)
    api.v1.products.update("prod_sandbox_team", params={"description": "For teams"})
    api.v1.prices.update("price_sandbox_team", params={"nickname": "Team monthly"})
    plan = api.v1.plans.create(params={"amount": 1200, "currency": "usd", "interval": "month",
                                       "product": {"name": "Legacy"}})
    api.v1.plans.update(plan.id, params={"nickname": "Legacy plan"})
    api.v1.plans.delete(plan.id)
    api.v1.products.delete(plan.product)
    emu.advance(seconds=61)  # the refund on pm_card_refundFail fails

    assert PAYMENT_EVENTS <= {e["type"] for e in emu.events}
    process_events(emu)
    assert djstripe_models.Event.objects.count() == len(emu.events)
    charge = djstripe_models.Charge.objects.get(id=paid.latest_charge)
    assert charge.amount_refunded == 500 and charge.customer.id == customer.id
    assert djstripe_models.PaymentIntent.objects.get(id=held.id).stripe_data["status"] == "succeeded"
    assert djstripe_models.Dispute.objects.get(id=won.id).stripe_data["status"] == "won"
    assert djstripe_models.Dispute.objects.get(id=lost.id).stripe_data["status"] == "lost"
    assert [r.stripe_data["status"] for r in djstripe_models.Refund.objects.all()].count("failed") == 1
    assert sorted(s.stripe_data["status"] for s in djstripe_models.SetupIntent.objects.all()) == [
        "canceled", "requires_action", "requires_payment_method", "succeeded"]
    assert not djstripe_models.Product.objects.filter(id=plan.product).exists()


SUBSCRIPTION_EVENTS = {
    "customer.subscription.created", "customer.subscription.updated", "customer.subscription.deleted",
    "customer.subscription.paused", "customer.subscription.resumed", "customer.subscription.trial_will_end",
    "subscription_schedule.created", "subscription_schedule.updated", "subscription_schedule.expiring",
    "subscription_schedule.released", "subscription_schedule.completed", "subscription_schedule.canceled",
    "subscription_schedule.aborted",
    "test_helpers.test_clock.created", "test_helpers.test_clock.advancing", "test_helpers.test_clock.ready",
    "test_helpers.test_clock.deleted", "billing_portal.configuration.created",
    "billing_portal.configuration.updated", "billing_portal.session.created", "checkout.session.completed",
    "invoiceitem.created",
}


def subscription_family_scenario(emu):
    """Every subscription-family event: API subscriptions (trial, pause, resume, proration, cancel),
    schedules, test clocks, portal configurations, Checkout in its three modes."""
    api = stripe.StripeClient(API_KEY, base_addresses={"api": emu.url}, max_network_retries=0)
    day = 86400
    customer = api.v1.customers.create(params={"email": "sub@example.com"}).id
    emu.set_card(customer, card="4242424242424242")
    sub = api.v1.subscriptions.create(params={"customer": customer, "items": [{"price": "price_sandbox_pro"}],
                                              "trial_period_days": 2})
    emu.advance(days=3)  # trial_will_end, then billed
    api.v1.subscriptions.update(sub.id, params={"items": [{"id": sub["items"].data[0].id,
                                                           "price": "price_sandbox_team"}]})
    bare = api.v1.customers.create(params={"email": "bare@example.com"}).id
    paused = api.v1.subscriptions.create(params={
        "customer": bare, "items": [{"price": "price_sandbox_pro"}], "trial_period_days": 1,
        "trial_settings": {"end_behavior": {"missing_payment_method": "pause"}}})
    emu.advance(days=2)
    emu.set_card(bare, card="4242424242424242")
    api.v1.subscriptions.resume(paused.id)
    api.v1.subscriptions.cancel(paused.id, params={"prorate": True})
    released = api.v1.subscription_schedules.create(params={
        "customer": customer, "end_behavior": "release",
        "phases": [{"items": [{"price": "price_sandbox_pro"}], "iterations": 1}]})
    emu.advance(days=32)
    completed = api.v1.subscription_schedules.create(params={
        "customer": customer, "end_behavior": "cancel",
        "phases": [{"items": [{"price": "price_sandbox_pro"}], "iterations": 1}]})
    emu.advance(days=32)
    canceled = api.v1.subscription_schedules.create(params={
        "customer": customer, "phases": [{"items": [{"price": "price_sandbox_pro"}], "iterations": 1}]})
    api.v1.subscription_schedules.cancel(canceled.id)
    aborted = api.v1.subscription_schedules.create(params={
        "customer": customer, "phases": [{"items": [{"price": "price_sandbox_pro"}], "iterations": 2}]})
    api.v1.subscriptions.cancel(aborted.subscription)
    clock = api.v1.test_helpers.test_clocks.create(params={"frozen_time": emu.now()})
    on_clock = api.v1.customers.create(params={"email": "clock@example.com", "test_clock": clock.id}).id
    emu.set_card(on_clock, card="4242424242424242")
    api.v1.subscriptions.create(params={"customer": on_clock, "items": [{"price": "price_sandbox_pro"}]})
    api.v1.test_helpers.test_clocks.advance(clock.id, params={"frozen_time": clock.frozen_time + 31 * day})
    configuration = api.v1.billing_portal.configurations.create(params={
        "features": {"invoice_history": {"enabled": True}}})
    api.v1.billing_portal.configurations.update(configuration.id, params={"metadata": {"k": "v"}})
    api.v1.billing_portal.sessions.create(params={"customer": customer, "configuration": configuration.id})
    product = api.v1.products.create(params={"name": "One-off"})
    one_off = api.v1.prices.create(params={"product": product.id, "unit_amount": 1200, "currency": "usd"})
    payment = api.v1.checkout.sessions.create(params={
        "mode": "payment", "line_items": [{"price": one_off.id}], "success_url": "https://console.test/ok",
        "customer": customer})
    assert emu.pay_checkout(payment.id)["ok"]
    setup = api.v1.checkout.sessions.create(params={
        "mode": "setup", "customer": customer, "currency": "usd", "success_url": "https://console.test/ok"})
    assert emu.pay_checkout(setup.id)["ok"]
    trial = api.v1.checkout.sessions.create(params={
        "mode": "subscription", "line_items": [{"price": "price_sandbox_pro"}], "success_url": "https://console.test/ok",
        "customer_email": "trial@example.com", "subscription_data": {"trial_period_days": 7},
        "phone_number_collection": {"enabled": True}})
    assert emu.pay_checkout(trial.id, phone="+15555550100")["ok"]
    doomed = api.v1.test_helpers.test_clocks.create(params={"frozen_time": emu.now()})
    api.v1.test_helpers.test_clocks.delete(doomed.id)
    return released, completed


def test_djstripe_processes_every_subscription_family_event(emu):
    released, completed = subscription_family_scenario(emu)
    types = {e["type"] for e in emu.events}
    assert SUBSCRIPTION_EVENTS <= types, SUBSCRIPTION_EVENTS - types
    process_events(emu)
    assert djstripe_models.Event.objects.count() == len(emu.events)
    statuses = {s.stripe_data["status"] for s in djstripe_models.Subscription.objects.all()}
    assert {"active", "canceled", "trialing"} <= statuses
    assert djstripe_models.SubscriptionSchedule.objects.get(id=released.id).stripe_data["status"] == "released"
    assert djstripe_models.SubscriptionSchedule.objects.get(id=completed.id).stripe_data["status"] == "completed"
