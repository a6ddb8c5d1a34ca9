"""Billing meters, meter events, event summaries and metered tiered prices billed in arrears on the
renewal invoice, in the Stripe sandbox, through the real stripe library."""
import pytest
import stripe

from sandbox.stripe import StripeEmulator
from tests.sandbox.test_stripe_shapes import assert_stripe_shape, shape_errors

API_KEY = "sk_test_meters"
DAY = 86400


@pytest.fixture
def emu():
    with StripeEmulator() as emulator:
        yield emulator


@pytest.fixture
def api(emu):
    return stripe.StripeClient(API_KEY, base_addresses={"api": emu.url}, max_network_retries=0)


def meter(api, formula="sum", event_name="impressions", **extra):
    return api.v1.billing.meters.create(params={"display_name": event_name.title(), "event_name": event_name,
                                               "default_aggregation": {"formula": formula}, **extra})


def customer(api):
    return api.v1.customers.create(params={"email": "m@example.com", "payment_method": "pm_card_visa",
                                           "invoice_settings": {"default_payment_method": "pm_card_visa"}})


def report(api, cus, value, identifier=None, event_name="impressions", **extra):
    params = {"event_name": event_name, "payload": {"stripe_customer_id": cus.id, "value": str(value)}, **extra}
    if identifier:
        params["identifier"] = identifier
    return api.v1.billing.meter_events.create(params=params)


def summary(api, mtr, cus, start, end, **extra):
    return api.v1.billing.meters.event_summaries.list(mtr.id, params={
        "customer": cus.id, "start_time": start, "end_time": end, **extra}).data


def test_meter_lifecycle_and_events(emu, api):
    start = len(emu.events)
    mtr = meter(api, customer_mapping={"type": "by_id", "event_payload_key": "account"},
                value_settings={"event_payload_key": "count"})
    assert (mtr.status, mtr.customer_mapping.event_payload_key, mtr.value_settings.event_payload_key) == \
        ("active", "account", "count")
    assert api.v1.billing.meters.retrieve(mtr.id).event_name == "impressions"
    assert api.v1.billing.meters.update(mtr.id, params={"display_name": "Ad impressions"}).display_name == \
        "Ad impressions"
    off = api.v1.billing.meters.deactivate(mtr.id)
    assert off.status == "inactive" and emu.now() - 5 <= off.status_transitions.deactivated_at <= emu.now()
    assert [m.id for m in api.v1.billing.meters.list(params={"status": "inactive"}).data] == [mtr.id]
    on = api.v1.billing.meters.reactivate(mtr.id)
    assert on.status == "active" and on.status_transitions.deactivated_at is None
    assert [e["type"] for e in emu.events[start:]] == ["billing.meter.created", "billing.meter.updated",
                                                        "billing.meter.deactivated", "billing.meter.reactivated"]
    for obj in emu.list_objects("billing.meter"):
        assert_stripe_shape(obj)
    with pytest.raises(stripe.InvalidRequestError, match="already active"):
        api.v1.billing.meters.reactivate(mtr.id)


@pytest.mark.parametrize("params, message", [
    ({"display_name": "X", "event_name": "x"}, "default_aggregation[formula]"),
    ({"display_name": "X", "event_name": "x", "default_aggregation": {"formula": "max"}}, "sum, count, or last"),
    ({"display_name": "X", "default_aggregation": {"formula": "sum"}}, "Missing required param: event_name"),
    ({"display_name": "X", "event_name": "x", "default_aggregation": {"formula": "sum"}, "unit": "ms"},
     "Received unknown parameter: unit"),
])
def test_bad_meters_are_refused(api, params, message):
    with pytest.raises(stripe.InvalidRequestError) as exc:
        api.v1.billing.meters.create(params=params)
    assert exc.value.http_status == 400 and message in exc.value.user_message


def test_meter_events_dedupe_identifiers_for_24_hours_and_refuse_what_stripe_refuses(emu, api):
    meter(api)
    cus = customer(api)
    event = report(api, cus, 25, identifier="win-1")
    assert (event.identifier, event.payload.value, event.timestamp) == ("win-1", "25", event.created)
    assert not shape_errors(event.to_dict(), __import__("sandbox.stripe.shapes", fromlist=["RESOURCES"])
                            .RESOURCES["billing.meter_event"], "meter_event")
    with pytest.raises(stripe.InvalidRequestError) as exc:
        report(api, cus, 25, identifier="win-1")
    assert exc.value.code == "duplicate_meter_event" and exc.value.http_status == 400
    emu.advance(hours=25)
    assert report(api, cus, 5, identifier="win-1").identifier == "win-1"  # outside the 24 h window

    now = emu.now()
    cases = [
        (lambda: report(api, cus, 1, event_name="clicks"), "no_meter", "No active meter"),
        (lambda: api.v1.billing.meter_events.create(params={
            "event_name": "impressions", "payload": {"stripe_customer_id": "cus_missing", "value": "1"}}),
         "meter_event_customer_not_found", "No such customer: 'cus_missing'"),
        (lambda: api.v1.billing.meter_events.create(params={"event_name": "impressions", "payload": {"value": "1"}}),
         "meter_event_no_customer_defined", "payload[stripe_customer_id]"),
        (lambda: report(api, cus, "lots"), "meter_event_invalid_value", "not a valid non-negative number"),
        (lambda: report(api, cus, -1), "meter_event_invalid_value", "not a valid non-negative number"),
        (lambda: report(api, cus, 1, timestamp=now - 36 * DAY), "timestamp_too_far_in_past", "35"),
        (lambda: report(api, cus, 1, timestamp=now + 360), "timestamp_in_future", "5 minutes"),
    ]
    for call, code, message in cases:
        with pytest.raises(stripe.InvalidRequestError) as exc:
            call()
        assert (exc.value.http_status, exc.value.code) == (400, code)
        assert message in exc.value.user_message
    assert report(api, cus, 1, timestamp=now - 35 * DAY + 60).timestamp == now - 35 * DAY + 60
    with pytest.raises(stripe.InvalidRequestError, match="Received unknown parameter: value"):
        api.v1.billing.meter_events.create(params={"event_name": "impressions", "value": 1,
                                                   "payload": {"stripe_customer_id": cus.id, "value": "1"}})
    mtr = api.v1.billing.meters.list().data[0]
    api.v1.billing.meters.deactivate(mtr.id)
    with pytest.raises(stripe.InvalidRequestError) as exc:
        report(api, cus, 1)
    assert exc.value.code == "archived_meter"


def test_event_summaries_sum_count_and_last_by_window(emu, api):
    cus = customer(api)
    sums, counts, lasts = meter(api, "sum", "a"), meter(api, "count", "b"), meter(api, "last", "c")
    now = emu.now()
    day0 = now - now % DAY - 2 * DAY
    for offset, value in ((3600, 10), (7200, 5), (DAY + 60, 7)):
        for name in ("a", "b", "c"):
            report(api, cus, value, event_name=name, timestamp=day0 + offset)
    assert [s.aggregated_value for s in summary(api, sums, cus, day0, day0 + 2 * DAY)] == [22]
    assert [s.aggregated_value for s in summary(api, counts, cus, day0, day0 + 2 * DAY)] == [3]
    assert [s.aggregated_value for s in summary(api, lasts, cus, day0, day0 + 2 * DAY)] == [7]
    daily = summary(api, sums, cus, day0, day0 + 2 * DAY, value_grouping_window="day")
    assert [(s.start_time - day0, s.aggregated_value) for s in daily] == [(DAY, 7), (0, 15)]  # newest first
    hourly = summary(api, sums, cus, day0, day0 + 3 * 3600, value_grouping_window="hour")
    assert [s.aggregated_value for s in hourly] == [5, 10, 0]
    assert_stripe_shape(daily[0].to_dict())
    other = api.v1.customers.create(params={"email": "o@example.com"})
    assert summary(api, sums, other, day0, day0 + DAY)[0].aggregated_value == 0
    for extra, message in [({"value_grouping_window": "week"}, "value_grouping_window"),
                           ({"start_time": day0 + 1}, "aligned"),
                           ({"end_time": day0}, "after the start_time"),
                           ({"colour": "x"}, "Received unknown parameter: colour")]:
        params = {"customer": cus.id, "start_time": day0, "end_time": day0 + DAY, **extra}
        with pytest.raises(stripe.InvalidRequestError, match=message):
            api.v1.billing.meters.event_summaries.list(sums.id, params=params)
    with pytest.raises(stripe.InvalidRequestError, match="No such customer"):
        summary(api, sums, type("C", (), {"id": "cus_missing"}), day0, day0 + DAY)
    with pytest.raises(stripe.InvalidRequestError, match="No such billing.meter"):
        api.v1.billing.meters.event_summaries.list("mtr_missing", params={"customer": cus.id, "start_time": day0,
                                                                          "end_time": day0 + DAY})


def tiered_price(api, mtr, mode):
    return api.v1.prices.create(params={
        "product": "prod_sandbox_pro", "currency": "usd", "billing_scheme": "tiered", "tiers_mode": mode,
        "recurring": {"interval": "month", "usage_type": "metered", "meter": mtr.id},
        "tiers": [{"up_to": 1000, "unit_amount": 0}, {"up_to": 10000, "unit_amount_decimal": "0.5", "flat_amount": 100},
                  {"up_to": "inf", "unit_amount_decimal": "0.25"}]})


def test_metered_prices_validate_their_meter_and_tiers(api):
    mtr = meter(api)
    price = tiered_price(api, mtr, "graduated")
    assert (price.billing_scheme, price.tiers_mode, price.unit_amount) == ("tiered", "graduated", None)
    assert (price.recurring.usage_type, price.recurring.meter) == ("metered", mtr.id)
    tiers = api.v1.prices.retrieve(price.id, params={"expand": ["tiers"]}).tiers
    assert [(t.up_to, str(t.unit_amount_decimal), t.flat_amount) for t in tiers] == [
        (1000, "0", None), (10000, "0.5", 100), (None, "0.25", None)]
    base = {"product": "prod_sandbox_pro", "currency": "usd"}
    for params, message in [
        ({"unit_amount": 1, "recurring": {"interval": "month", "usage_type": "metered"}}, "recurring[meter]"),
        ({"unit_amount": 1, "recurring": {"interval": "month", "usage_type": "metered", "meter": "mtr_x"}},
         "No such billing.meter"),
        ({"billing_scheme": "tiered", "recurring": {"interval": "month"}, "tiers": [{"up_to": "inf"}]}, "tiers_mode"),
        ({"billing_scheme": "tiered", "tiers_mode": "volume", "recurring": {"interval": "month"},
          "tiers": [{"up_to": 10, "unit_amount": 1}]}, "up_to=inf"),
        ({"billing_scheme": "tiered", "tiers_mode": "volume", "recurring": {"interval": "month"},
          "tiers": [{"up_to": 10, "unit_amount": 1}, {"up_to": 5, "unit_amount": 1}, {"up_to": "inf"}]},
         "increasing"),
    ]:
        with pytest.raises(stripe.InvalidRequestError, match=message.replace("[", r"\[").replace("]", r"\]")):
            api.v1.prices.create(params={**base, **params})


@pytest.mark.parametrize("mode", ["graduated", "volume"])
def test_renewal_bills_the_meters_total_for_the_period_that_ended_at_the_tiered_price(emu, api, mode):
    mtr = meter(api)
    price = tiered_price(api, mtr, mode)
    cus = customer(api)
    sub = api.v1.subscriptions.create(params={"customer": cus.id,
                                              "items": [{"price": "price_sandbox_pro"}, {"price": price.id}]})
    first = api.v1.invoices.retrieve(sub.latest_invoice)
    assert first.total == 900  # usage is billed in arrears: nothing yet
    period_start, period_end = sub.current_period_start, sub.current_period_end
    report(api, cus, 2000, identifier="w1")
    report(api, cus, 2000, identifier="w2", timestamp=period_start + 60)
    emu.advance(days=10)
    report(api, cus, 1000, identifier="w3")
    # 5,000 units. Graduated: 1,000 free, then 4,000 at 0.5 plus the second tier's 100 flat = 2,100.
    # Volume: all 5,000 at the second tier's 0.5 plus its 100 flat = 2,600.
    expected_usage = {"graduated": 100 + 2000, "volume": 100 + 2500}[mode]
    preview = api.v1.invoices.create_preview(params={"subscription": sub.id})
    assert [line.amount for line in preview.lines.data] == [900, expected_usage]
    emu.advance(days=25)
    renewal = api.v1.invoices.retrieve(api.v1.subscriptions.retrieve(sub.id).latest_invoice)
    assert renewal.billing_reason == "subscription_cycle" and renewal.status == "paid"
    licensed, usage = renewal.lines.data
    assert (usage.quantity, usage.amount) == (5000, expected_usage)
    assert (usage.period.start, usage.period.end) == (period_start, period_end)
    assert licensed.period.start == period_end
    assert usage.pricing.price_details.price == price.id
    assert renewal.total == 900 + expected_usage
    # Usage after the renewal goes on the next invoice, never twice.
    report(api, cus, 10, identifier="w4")
    emu.advance(days=31)
    following = api.v1.invoices.retrieve(api.v1.subscriptions.retrieve(sub.id).latest_invoice)
    assert following.lines.data[1].quantity == 10 and following.id != renewal.id
    for obj in emu.list_objects("invoice"):
        assert_stripe_shape(obj)


def test_meters_events_and_usage_survive_a_restart(tmp_path):
    state = tmp_path / "stripe.json"
    with StripeEmulator(state_path=state) as emu:
        api = stripe.StripeClient(API_KEY, base_addresses={"api": emu.url}, max_network_retries=0)
        mtr = meter(api)
        cus = customer(api)
        report(api, cus, 40, identifier="kept")
        coupon = api.v1.coupons.create(params={"percent_off": 5, "duration": "forever"})
    with StripeEmulator(state_path=state) as emu:
        api = stripe.StripeClient(API_KEY, base_addresses={"api": emu.url}, max_network_retries=0)
        assert emu.restored and api.v1.coupons.retrieve(coupon.id).percent_off == 5
        with pytest.raises(stripe.InvalidRequestError) as exc:
            report(api, cus, 40, identifier="kept")
        assert exc.value.code == "duplicate_meter_event"
        now = emu.now()
        start = now - now % DAY
        assert summary(api, mtr, cus, start, start + DAY)[0].aggregated_value == 40


def test_checkout_with_a_metered_price_charges_nothing_for_usage_until_the_renewal(emu, api):
    mtr = meter(api)
    price = tiered_price(api, mtr, "graduated")
    session = api.v1.checkout.sessions.create(params={
        "mode": "subscription", "line_items": [{"price": "price_sandbox_pro", "quantity": 1}, {"price": price.id}],
        "customer_email": "c@example.com", "success_url": "https://console.test/ok"})
    assert session.amount_total == 900
    paid = emu.pay_checkout(session.id)
    assert api.v1.invoices.retrieve(paid["invoice"]).total == 900
    api.v1.billing.meter_events.create(params={"event_name": "impressions", "identifier": "c-1",
                                               "payload": {"stripe_customer_id": paid["customer"], "value": "3000"}})
    emu.advance(days=32)
    renewal = api.v1.invoices.retrieve(api.v1.subscriptions.retrieve(paid["subscription"]).latest_invoice)
    assert [(line.quantity, line.amount) for line in renewal.lines.data] == [(1, 900), (3000, 100 + 1000)]
