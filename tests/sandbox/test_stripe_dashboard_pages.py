"""The sandbox's read-only dashboard pages (what the console's "in Stripe" links open in sandbox mode) and the
demo phone its Checkout page prefills."""
import urllib.error
import urllib.request

import pytest
import stripe

from sandbox.stripe import StripeEmulator
from sandbox.stripe.pages import DEMO_PHONE

API_KEY = "sk_test_dashboard_pages"
OK = "https://console.test/ok?session={CHECKOUT_SESSION_ID}"


@pytest.fixture
def emu():
    with StripeEmulator(webhook_retry_seconds=0.01) as emulator:
        yield emulator


@pytest.fixture
def api(emu):
    return stripe.StripeClient(API_KEY, base_addresses={"api": emu.url}, max_network_retries=0)


def get(url):
    try:
        with urllib.request.urlopen(url, timeout=5) as answer:
            return answer.status, answer.read().decode()
    except urllib.error.HTTPError as error:
        return error.code, error.read().decode()


@pytest.fixture
def subscriber(api, emu):
    session = api.v1.checkout.sessions.create(params={
        "mode": "subscription", "line_items": [{"price": "price_sandbox_pro"}], "success_url": OK})
    result = emu.pay_checkout(session.id, email="dash@example.com")
    assert result["ok"], result
    return api.v1.checkout.sessions.retrieve(session.id)


def test_the_customer_page_shows_the_customer_its_subscriptions_and_invoices(emu, subscriber):
    status, body = get(f"{emu.url}/dashboard/customers/{subscriber.customer}")
    assert status == 200
    assert "<h1>dash@example.com</h1>" in body and "<th>email</th><td>dash@example.com</td>" in body
    assert f"href='/dashboard/subscriptions/{subscriber.subscription}'" in body
    assert f"href='/invoices/{subscriber.invoice}'" in body and "id=invoices" in body


def test_the_subscription_page_shows_its_fields_and_links_back_to_the_customer(emu, subscriber):
    status, body = get(f"{emu.url}/dashboard/subscriptions/{subscriber.subscription}")
    assert status == 200
    assert "<th>status</th><td>active</td>" in body
    assert f"href='/dashboard/customers/{subscriber.customer}'" in body


@pytest.mark.parametrize("path", ["/dashboard/customers/cus_nobody", "/dashboard/subscriptions/sub_nobody",
                                  "/dashboard/customers/price_sandbox_pro"])
def test_an_unknown_or_mistyped_id_is_a_404(emu, path):
    status, body = get(emu.url + path)
    assert status == 404 and "No such" in body


def test_the_checkout_page_prefills_a_demo_phone_when_it_collects_one(api, emu):
    with_phone = api.v1.checkout.sessions.create(params={
        "mode": "subscription", "line_items": [{"price": "price_sandbox_pro"}], "success_url": OK,
        "phone_number_collection": {"enabled": True}})
    without = api.v1.checkout.sessions.create(params={
        "mode": "subscription", "line_items": [{"price": "price_sandbox_pro"}], "success_url": OK})
    assert f"value='{DEMO_PHONE}'" in get(with_phone.url)[1]
    assert DEMO_PHONE not in get(without.url)[1] and "name=phone" not in get(without.url)[1]
