"""Subscription schedules through the real stripe library: phases start and change a subscription by the
clock; release, cancel, and the schedule's events."""
import pytest
import stripe

from sandbox.stripe import StripeEmulator

from .test_stripe_shapes import assert_stripe_shape

API_KEY = "sk_test_schedules"
DAY = 86400


@pytest.fixture
def emu():
    with StripeEmulator(webhook_retry_seconds=0.01) as emulator:
        yield emulator


@pytest.fixture
def api(emu):
    return stripe.StripeClient(API_KEY, base_addresses={"api": emu.url}, max_network_retries=0)


def paying_customer(api, emu):
    cus = api.v1.customers.create(params={"email": "sched@example.com"})
    emu.set_card(cus.id, card="4242424242424242")
    return cus.id


def schedule_types(emu, start=0):
    return [e["type"] for e in emu.events[start:] if e["type"].startswith("subscription_schedule.")]


def test_a_future_schedule_starts_then_moves_to_its_next_phase_then_releases(api, emu):
    cus = paying_customer(api, emu)
    start = emu.now() + 2 * DAY
    schedule = api.v1.subscription_schedules.create(params={
        "customer": cus, "start_date": start, "end_behavior": "release", "metadata": {"k": "v"},
        "phases": [{"items": [{"price": "price_sandbox_pro"}], "iterations": 1},
                   {"items": [{"price": "price_sandbox_team", "quantity": 2}], "iterations": 1}]})
    assert (schedule.status, schedule.subscription) == ("not_started", None)
    assert schedule.phases[1].start_date == schedule.phases[0].end_date
    emu.advance(days=3)
    schedule = api.v1.subscription_schedules.retrieve(schedule.id)
    assert schedule.status == "active"
    sub = api.v1.subscriptions.retrieve(schedule.subscription)
    assert (sub.status, sub.schedule, sub["items"].data[0].price.id) == ("active", schedule.id, "price_sandbox_pro")
    emu.advance(days=31)
    sub = api.v1.subscriptions.retrieve(sub.id)
    assert (sub["items"].data[0].price.id, sub["items"].data[0].quantity) == ("price_sandbox_team", 2)
    assert api.v1.invoices.retrieve(sub.latest_invoice).amount_paid == 5800
    emu.advance(days=31)
    schedule = api.v1.subscription_schedules.retrieve(schedule.id)
    assert (schedule.status, schedule.released_subscription) == ("released", sub.id)
    assert api.v1.subscriptions.retrieve(sub.id).status == "active"
    assert schedule_types(emu) == ["subscription_schedule.created", "subscription_schedule.updated",
                                   "subscription_schedule.updated", "subscription_schedule.expiring",
                                   "subscription_schedule.released"]
    assert_stripe_shape(emu.get(schedule.id))


def test_end_behavior_cancel_cancels_the_subscription_at_the_end(api, emu):
    cus = paying_customer(api, emu)
    schedule = api.v1.subscription_schedules.create(params={
        "customer": cus, "start_date": "now", "end_behavior": "cancel",
        "phases": [{"items": [{"price": "price_sandbox_pro"}], "iterations": 2}]})
    assert schedule.status == "active"
    emu.advance(days=63)
    schedule = api.v1.subscription_schedules.retrieve(schedule.id)
    assert schedule.status == "completed"
    assert api.v1.subscriptions.retrieve(schedule.subscription).status == "canceled"


def test_from_subscription_release_and_cancel(api, emu):
    cus = paying_customer(api, emu)
    sub = api.v1.subscriptions.create(params={"customer": cus, "items": [{"price": "price_sandbox_pro"}]})
    schedule = api.v1.subscription_schedules.create(params={"from_subscription": sub.id})
    assert (schedule.status, schedule.subscription) == ("active", sub.id)
    assert api.v1.subscriptions.retrieve(sub.id).schedule == schedule.id
    with pytest.raises(stripe.InvalidRequestError) as error:
        api.v1.subscription_schedules.create(params={"from_subscription": sub.id})
    assert "already attached to a schedule" in error.value.user_message
    released = api.v1.subscription_schedules.release(schedule.id)
    assert (released.status, released.released_subscription) == ("released", sub.id)
    assert api.v1.subscriptions.retrieve(sub.id).schedule is None
    with pytest.raises(stripe.InvalidRequestError):
        api.v1.subscription_schedules.cancel(schedule.id)
    other = api.v1.subscription_schedules.create(params={
        "customer": cus, "phases": [{"items": [{"price": "price_sandbox_team"}]}]})
    canceled = api.v1.subscription_schedules.cancel(other.id)
    assert canceled.status == "canceled"
    assert api.v1.subscriptions.retrieve(other.subscription).status == "canceled"
    assert "subscription_schedule.canceled" in schedule_types(emu)


def test_update_phases_changes_the_running_subscription(api, emu):
    cus = paying_customer(api, emu)
    schedule = api.v1.subscription_schedules.create(params={
        "customer": cus, "phases": [{"items": [{"price": "price_sandbox_pro"}], "iterations": 3}]})
    updated = api.v1.subscription_schedules.update(schedule.id, params={
        "phases": [{"items": [{"price": "price_sandbox_pro", "quantity": 3}], "iterations": 3,
                    "start_date": schedule.phases[0].start_date}], "proration_behavior": "none"})
    assert updated.phases[0]["items"][0].quantity == 3
    sub = api.v1.subscriptions.retrieve(schedule.subscription)
    assert sub["items"].data[0].quantity == 3
    assert [s.id for s in api.v1.subscription_schedules.list(params={"customer": cus}).data] == [schedule.id]


def test_bad_input_answers_stripe_errors(api, emu):
    cus = paying_customer(api, emu)
    cases = [({"customer": cus, "phases": [{"items": [{"price": "price_sandbox_pro"}]}], "bogus": 1},
              "Received unknown parameter: bogus"),
             ({"customer": cus, "phases": [{"items": [{"price": "price_nope"}]}]}, "No such price: 'price_nope'"),
             ({"customer": cus, "phases": [{"items": [{"price": "price_sandbox_pro"}], "colour": 1}]},
              "Received unknown parameter: phases[0][colour]"),
             ({"customer": "cus_nope", "phases": [{"items": [{"price": "price_sandbox_pro"}]}]},
              "No such customer: 'cus_nope'"),
             ({"customer": cus}, "Missing required param: phases."),
             ({"from_subscription": "sub_nope"}, "No such subscription: 'sub_nope'"),
             ({"customer": cus, "phases": [{"items": [{"price": "price_sandbox_pro"}], "coupon": "x"}]},
              "does not emulate `phases[0][coupon]`")]
    for params, message in cases:
        with pytest.raises(stripe.InvalidRequestError) as error:
            api.v1.subscription_schedules.create(params=params)
        assert message in error.value.user_message, params
    with pytest.raises(stripe.InvalidRequestError) as error:
        api.v1.subscription_schedules.retrieve("sub_sched_nope")
    assert error.value.http_status == 404
    assert "No such subscription schedule" in error.value.user_message


def test_canceling_the_subscription_aborts_its_schedule(api, emu):
    cus = paying_customer(api, emu)
    schedule = api.v1.subscription_schedules.create(params={
        "customer": cus, "phases": [{"items": [{"price": "price_sandbox_pro"}], "iterations": 3}]})
    api.v1.subscriptions.cancel(schedule.subscription)
    schedule = api.v1.subscription_schedules.retrieve(schedule.id)
    assert schedule.status == "canceled"
    assert schedule_types(emu)[-1] == "subscription_schedule.aborted"
    emu.advance(days=100)  # nothing left to run
    assert api.v1.subscription_schedules.retrieve(schedule.id).status == "canceled"
