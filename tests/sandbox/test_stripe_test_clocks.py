"""Stripe's test clocks (/v1/test_helpers/test_clocks) through the real stripe library: customers on a
clock live on its time, the sandbox's global clock moves everyone else."""
import pytest
import stripe

from sandbox.stripe import StripeEmulator

from .test_stripe_shapes import assert_stripe_shape

API_KEY = "sk_test_clocks"
DAY = 86400


@pytest.fixture
def emu():
    with StripeEmulator(webhook_retry_seconds=0.01) as emulator:
        yield emulator


@pytest.fixture
def api(emu):
    return stripe.StripeClient(API_KEY, base_addresses={"api": emu.url}, max_network_retries=0)


def clock_customer(api, emu, frozen_time):
    clock = api.v1.test_helpers.test_clocks.create(params={"frozen_time": frozen_time, "name": "renewals"})
    cus = api.v1.customers.create(params={"email": "clock@example.com", "test_clock": clock.id})
    emu.set_card(cus.id, card="4242424242424242")
    return clock, cus


def test_a_clock_customer_subscribes_at_the_clock_time_and_renews_only_with_its_clock(api, emu):
    start = emu.now() - 400 * DAY
    clock, cus = clock_customer(api, emu, start)
    assert (clock.status, clock.frozen_time, clock.name) == ("ready", start, "renewals")
    assert cus.test_clock == clock.id and cus.created == start
    sub = api.v1.subscriptions.create(params={"customer": cus.id, "items": [{"price": "price_sandbox_pro"}]})
    assert sub.test_clock == clock.id and sub.current_period_start == start
    first_invoice = sub.latest_invoice
    emu.advance(days=40)  # the global clock: the clock's subscription does not move
    assert api.v1.subscriptions.retrieve(sub.id).latest_invoice == first_invoice
    before = len(emu.events)
    answer = api.v1.test_helpers.test_clocks.advance(clock.id, params={"frozen_time": start + 31 * DAY})
    assert answer.status == "advancing"
    clock = api.v1.test_helpers.test_clocks.retrieve(clock.id)
    assert (clock.status, clock.frozen_time) == ("ready", start + 31 * DAY)
    sub = api.v1.subscriptions.retrieve(sub.id)
    assert sub.latest_invoice != first_invoice and sub.current_period_start > start
    renewal = api.v1.invoices.retrieve(sub.latest_invoice)
    assert renewal.status == "paid" and renewal.created == sub.current_period_start
    types = [e["type"] for e in emu.events[before:]]
    assert types[0] == "test_helpers.test_clock.advancing" and types[-1] == "test_helpers.test_clock.ready"
    assert "invoice.paid" in types
    created = {e["type"]: e["created"] for e in emu.events[before:]}
    assert created["invoice.paid"] <= start + 31 * DAY
    assert_stripe_shape(emu.get(clock.id))


def test_list_delete_and_errors(api, emu):
    clock, cus = clock_customer(api, emu, emu.now())
    assert [c.id for c in api.v1.test_helpers.test_clocks.list().data] == [clock.id]
    for params, message in [({"frozen_time": clock.frozen_time - 1}, "must be after"),
                            ({"frozen_time": clock.frozen_time + 800 * DAY}, "two intervals"),
                            ({"frozen_time": clock.frozen_time + DAY, "speed": 2},
                             "Received unknown parameter: speed")]:
        with pytest.raises(stripe.InvalidRequestError) as error:
            api.v1.test_helpers.test_clocks.advance(clock.id, params=params)
        assert message in error.value.user_message
    with pytest.raises(stripe.InvalidRequestError) as error:
        api.v1.test_helpers.test_clocks.create(params={})
    assert "Missing required param: frozen_time." in error.value.user_message
    with pytest.raises(stripe.InvalidRequestError) as error:
        api.v1.test_helpers.test_clocks.retrieve("clock_missing")
    assert error.value.http_status == 404 and "No such test clock: 'clock_missing'" in error.value.user_message
    with pytest.raises(stripe.InvalidRequestError) as error:
        api.v1.customers.create(params={"test_clock": "clock_missing"})
    assert "No such test clock" in error.value.user_message
    deleted = api.v1.test_helpers.test_clocks.delete(clock.id)
    assert deleted.deleted is True
    assert api.v1.customers.retrieve(cus.id).deleted is True
    with pytest.raises(stripe.InvalidRequestError):
        api.v1.test_helpers.test_clocks.retrieve(clock.id)
    assert [e["type"] for e in emu.events if e["type"].startswith("test_helpers.")] == [
        "test_helpers.test_clock.created", "test_helpers.test_clock.deleted"]


def test_a_trial_on_a_clock_ends_when_the_clock_passes_it(api, emu):
    clock, cus = clock_customer(api, emu, emu.now())
    sub = api.v1.subscriptions.create(params={"customer": cus.id, "items": [{"price": "price_sandbox_pro"}],
                                              "trial_period_days": 7})
    emu.advance(days=10)
    assert api.v1.subscriptions.retrieve(sub.id).status == "trialing"
    api.v1.test_helpers.test_clocks.advance(clock.id, params={"frozen_time": clock.frozen_time + 8 * DAY})
    assert api.v1.subscriptions.retrieve(sub.id).status == "active"


def test_cli_lists_clocks_and_advances_a_test_clock(api, emu, capsys):
    from sandbox.stripe.__main__ import main

    clock, cus = clock_customer(api, emu, emu.now())
    api.v1.subscriptions.create(params={"customer": cus.id, "items": [{"price": "price_sandbox_pro"}]})
    assert main(["clock", "list", "--url", emu.url]) == 0
    out = capsys.readouterr().out
    assert "sandbox" in out and clock.id in out and "renewals" in out
    assert main(["clock", "advance", "--days", "31", "--clock", clock.id, "--url", emu.url]) == 0
    out = capsys.readouterr().out
    assert "invoice.paid" in out and "test_helpers.test_clock.ready" in out
    assert api.v1.test_helpers.test_clocks.retrieve(clock.id).frozen_time == clock.frozen_time + 31 * DAY
    assert main(["clock", "advance", "--clock", clock.id, "--url", emu.url]) == 1
    assert "give --days" in capsys.readouterr().err


def test_clocks_and_their_customers_survive_a_restart(tmp_path):
    state = tmp_path / "stripe.json"
    with StripeEmulator(state_path=state) as emu:
        api = stripe.StripeClient(API_KEY, base_addresses={"api": emu.url}, max_network_retries=0)
        clock, cus = clock_customer(api, emu, emu.now())
        sub = api.v1.subscriptions.create(params={"customer": cus.id, "items": [{"price": "price_sandbox_pro"}],
                                                  "trial_period_days": 3})
    with StripeEmulator(state_path=state) as emu:
        api = stripe.StripeClient(API_KEY, base_addresses={"api": emu.url}, max_network_retries=0)
        assert emu.restored
        api.v1.test_helpers.test_clocks.advance(clock.id, params={"frozen_time": clock.frozen_time + 4 * DAY})
        assert api.v1.subscriptions.retrieve(sub.id).status == "active"
        assert "customer.subscription.trial_will_end" in [e["type"] for e in emu.events]


def test_api_calls_on_a_clock_customers_objects_run_at_the_clock_time(api, emu):
    start = emu.now() - 100 * DAY
    clock, cus = clock_customer(api, emu, start)
    emu.set_card(cus.id, "decline")
    sub = api.v1.subscriptions.create(params={"customer": cus.id, "items": [{"price": "price_sandbox_pro"}]})
    assert sub.status == "incomplete"
    emu.set_card(cus.id, "succeed")
    paid = api.v1.invoices.pay(sub.latest_invoice)
    assert paid.status_transitions.paid_at == start
    item = api.v1.invoice_items.create(params={"customer": cus.id, "amount": 100, "currency": "usd"})
    assert item.date == start
