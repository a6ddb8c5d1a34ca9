"""Reading Stripe objects in the pinned (dahlia) shape and in older shapes."""
from datetime import datetime, timezone

from billing_console.stripe import objects as so


def test_subscription_period_end_from_items_then_top_level():
    current = {"items": {"data": [{"current_period_end": 1_800_000_000, "current_period_start": 1_797_000_000}]}}
    older = {"current_period_end": 1_700_000_000, "items": {"data": [{}]}}
    assert so.subscription_period_end(current) == datetime.fromtimestamp(1_800_000_000, timezone.utc)
    assert so.subscription_period_end(older) == datetime.fromtimestamp(1_700_000_000, timezone.utc)
    assert so.subscription_period_end({}) is None


def test_invoice_subscription_from_parent_then_field_then_lines():
    assert so.invoice_subscription_id({"parent": {"subscription_details": {"subscription": "sub_new"}}}) == "sub_new"
    assert so.invoice_subscription_id({"parent": None, "subscription": {"id": "sub_old", "object": "subscription"}}) == "sub_old"
    line = {"parent": {"subscription_item_details": {"subscription": "sub_line"}}}
    assert so.invoice_subscription_id({"lines": {"data": [line]}}) == "sub_line"
    assert so.invoice_subscription_id({}) == ""


def test_cancel_at_period_end_from_flag_or_cancel_at():
    assert so.subscription_cancel_at_period_end({"cancel_at_period_end": True})
    assert so.subscription_cancel_at_period_end({"cancel_at": 1_800_000_000, "status": "active"})
    assert not so.subscription_cancel_at_period_end({"cancel_at": 1_800_000_000, "status": "canceled"})


def test_checkout_token_from_metadata_then_client_reference_id():
    assert so.checkout_token({"metadata": {"checkout_token": "t1"}, "client_reference_id": "t2"}) == "t1"
    assert so.checkout_token({"metadata": {}, "client_reference_id": "t2"}) == "t2"
    assert so.checkout_token({}) == ""


def test_price_and_ids_from_expanded_or_plain_fields():
    sub = {"customer": {"id": "cus_1"}, "items": {"data": [{"price": {"id": "price_1"}}]}}
    assert so.subscription_customer_id(sub) == "cus_1" and so.subscription_price_id(sub) == "price_1"
    assert so.event_customer_id({"data": {"object": {"object": "customer", "id": "cus_2"}}}) == "cus_2"
    assert so.invoice_period({"lines": {"data": [{"period": {"start": 10, "end": 20}}]}})[1].timestamp() == 20
