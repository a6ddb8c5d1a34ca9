"""The Stripe sandbox, driven by the real stripe library over HTTP, with a real webhook receiver."""
import json
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.parse
import urllib.request
from pathlib import Path

import pytest
import stripe

from sandbox._http import Response, StandIn
from sandbox.stripe import StripeEmulator, sign_payload

API_KEY = "sk_test_" + "Sandbox0123456789abcdefgh"
WEBHOOK_SECRET = "whsec_sandbox_test_secret"
ROOT = Path(__file__).resolve().parents[2]


class Receiver(StandIn):
    """A webhook endpoint that records every delivery and answers queued status codes (else 200)."""

    name = "webhook-receiver"

    def __init__(self):
        super().__init__()
        self.received: list[dict] = []
        self.statuses: list[int] = []

    def handle(self, request):
        with self.lock:
            status = self.statuses.pop(0) if self.statuses else 200
            self.received.append({"body": request.body, "signature": request.headers.get("Stripe-Signature"),
                                  "status": status})
        return Response(status, {"received": status < 300})

    def accepted(self) -> list[dict]:
        with self.lock:
            return [json.loads(r["body"]) for r in self.received if r["status"] < 300]

    def accepted_types(self) -> list[str]:
        return [event["type"] for event in self.accepted()]


@pytest.fixture
def receiver():
    with Receiver() as r:
        yield r


@pytest.fixture
def emu(receiver):
    emulator = StripeEmulator(webhook_url=receiver.url + "/api/billing/webhook", webhook_secret=WEBHOOK_SECRET,
                              webhook_retry_seconds=0.01, seed=7)
    with emulator:
        yield emulator


@pytest.fixture
def api(emu):
    return stripe.StripeClient(API_KEY, base_addresses={"api": emu.url}, max_network_retries=0)


def create_session(api, **overrides):
    params = {
        "mode": "subscription",
        "line_items": [{"price": "price_sandbox_pro", "quantity": 1}],
        "customer_email": "ada@example.com",
        "client_reference_id": "attempt-token-1",
        "metadata": {"attempt": "attempt-token-1"},
        "subscription_data": {"metadata": {"attempt": "attempt-token-1", "plan": "pro"}},
        "success_url": "https://console.test/thanks?session={CHECKOUT_SESSION_ID}",
        "cancel_url": "https://console.test/pricing",
    }
    params.update(overrides)
    return api.v1.checkout.sessions.create(params=params)


class _NoRedirect(urllib.request.HTTPRedirectHandler):
    def redirect_request(self, *args, **kwargs):
        return None


def submit_form(url, fields):
    """POST a form like a browser without following the redirect: (status, headers, body)."""
    opener = urllib.request.build_opener(_NoRedirect)
    data = urllib.parse.urlencode(fields).encode()
    try:
        with opener.open(urllib.request.Request(url, data=data, method="POST"), timeout=5) as response:
            return response.status, response.headers, response.read().decode()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.headers, exc.read().decode()


def get(url):
    try:
        with urllib.request.urlopen(url, timeout=5) as response:
            return response.status, response.read()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read()


def post_json(url, payload):
    request = urllib.request.Request(url, data=json.dumps(payload).encode(), method="POST",
                                     headers={"Content-Type": "application/json"})
    try:
        with urllib.request.urlopen(request, timeout=5) as response:
            return response.status, json.load(response)
    except urllib.error.HTTPError as exc:
        return exc.code, json.load(exc)


def subscribe(api, emu, **overrides):
    session = create_session(api, **overrides)
    result = emu.pay_checkout(session.id)
    assert result["ok"], result
    return api.v1.checkout.sessions.retrieve(session.id), result


# -- checkout ------------------------------------------------------------------------------------
def test_hosted_checkout_with_4242_creates_paid_subscription_and_redirects(api, emu, receiver):
    session = create_session(api)
    assert session.status == "open" and session.url == f"{emu.url}/checkout/{session.id}"
    status, page = get(session.url)
    assert status == 200 and b"<form" in page and b"ada@example.com" in page

    status, headers, _ = submit_form(session.url, {"email": "ada@example.com", "card": "4242 4242 4242 4242",
                                                   "exp": "12 / 34", "cvc": "123", "name": "Ada Lovelace"})
    assert status == 303
    assert headers["Location"] == f"https://console.test/thanks?session={session.id}"

    done = api.v1.checkout.sessions.retrieve(session.id, params={"expand": ["line_items"]})
    assert (done.status, done.payment_status) == ("complete", "paid")
    assert done.customer.startswith("cus_") and done.subscription.startswith("sub_")
    assert done.client_reference_id == "attempt-token-1" and done.metadata["attempt"] == "attempt-token-1"
    assert done.line_items.data[0].price.id == "price_sandbox_pro"

    sub = api.v1.subscriptions.retrieve(done.subscription, params={"expand": ["latest_invoice"]})
    assert sub.status == "active" and sub.customer == done.customer
    assert dict(sub.metadata) == {"attempt": "attempt-token-1", "plan": "pro"}
    assert sub.current_period_end - sub.current_period_start in (28 * 86400, 29 * 86400, 30 * 86400, 31 * 86400)
    assert sub["items"].data[0].current_period_end == sub.current_period_end
    invoice = sub.latest_invoice
    assert (invoice.status, invoice.amount_paid, invoice.amount_remaining) == ("paid", 900, 0)
    assert invoice.lines.data[0].amount == 900 and invoice.billing_reason == "subscription_create"
    assert invoice.hosted_invoice_url.startswith(emu.url) and invoice.number
    status, pdf = get(invoice.invoice_pdf)
    assert status == 200 and pdf.startswith(b"%PDF") and b"9.00" in pdf

    customer = api.v1.customers.retrieve(done.customer)
    assert customer.email == "ada@example.com" and customer.discount is None
    assert [pm.card.last4 for pm in api.v1.payment_methods.list(params={"customer": customer.id, "type": "card"})] \
        == ["4242"]

    expected = ["customer.created", "payment_method.attached", "checkout.session.completed",
                "customer.subscription.created", "invoice.created", "invoice.finalized", "payment_intent.created",
                "charge.succeeded", "payment_intent.succeeded", "invoice.paid", "invoice.payment_succeeded"]
    assert [e["type"] for e in emu.events] == expected
    assert emu.wait_idle(5)
    assert receiver.accepted_types() == expected
    created = next(e for e in emu.events if e["type"] == "invoice.created")
    assert created["data"]["object"]["status"] == "draft"  # a snapshot at emit time, not the final state


def test_declined_card_rerenders_the_page_and_leaves_the_session_open(api, emu):
    session = create_session(api)
    status, _, page = submit_form(session.url, {"email": "ada@example.com", "card": "4000 0000 0000 0341"})
    assert status == 200 and "Your card was declined." in page
    assert api.v1.checkout.sessions.retrieve(session.id).status == "open"
    assert emu.events == []
    status, _, page = submit_form(session.url, {"email": "ada@example.com", "card": "1234 5678 9012 3456"})
    assert "Your card number is incorrect." in page


def test_checkout_for_an_existing_customer_links_it(api, emu):
    customer = api.v1.customers.create(params={"email": "grace@example.com"})
    session, result = subscribe(api, emu, customer=customer.id, customer_email=None)
    assert session.customer == customer.id == result["customer"]
    assert "customer.created" not in [e["type"] for e in emu.events[1:]]


def test_expire_session_by_api_emits_checkout_session_expired(api, emu):
    session = create_session(api)
    expired = api.v1.checkout.sessions.expire(session.id)
    assert expired.status == "expired" and expired.url is None
    assert [e["type"] for e in emu.events] == ["checkout.session.expired"]
    with pytest.raises(stripe.InvalidRequestError):
        api.v1.checkout.sessions.expire(session.id)
    assert emu.pay_checkout(session.id)["ok"] is False


def test_session_expires_when_the_clock_passes_expires_at(api, emu, receiver):
    session = create_session(api)
    emu.advance(hours=23)
    assert api.v1.checkout.sessions.retrieve(session.id).status == "open"
    status, answer = post_json(f"{emu.url}/_sandbox/clock/advance", {"hours": 2})
    assert status == 200 and answer["events"] == ["checkout.session.expired"]
    event = emu.events[-1]
    assert event["created"] == session.expires_at and event["data"]["object"]["id"] == session.id
    assert emu.wait_idle(5) and receiver.accepted_types() == ["checkout.session.expired"]


def test_bad_checkout_input_answers_stripe_errors(api):
    with pytest.raises(stripe.InvalidRequestError) as missing:
        create_session(api, line_items=None)
    assert missing.value.param == "line_items"
    with pytest.raises(stripe.InvalidRequestError) as unknown_price:
        create_session(api, line_items=[{"price": "price_nope", "quantity": 1}])
    assert unknown_price.value.code == "resource_missing"
    with pytest.raises(stripe.InvalidRequestError) as typo:
        create_session(api, custmer_email="x@example.com")
    assert "unknown parameter: custmer_email" in str(typo.value)


# -- clock: renewals, retries, cancellation ------------------------------------------------------
def test_renewal_on_clock_advance_pays_and_moves_the_period(api, emu):
    session, _ = subscribe(api, emu)
    before = api.v1.subscriptions.retrieve(session.subscription)
    start = len(emu.events)
    emu.advance(days=32)
    types = [e["type"] for e in emu.events][start:]
    assert types == ["invoice.created", "invoice.finalized", "payment_intent.created", "charge.succeeded",
                     "payment_intent.succeeded", "invoice.paid", "invoice.payment_succeeded",
                     "customer.subscription.updated"]
    after = api.v1.subscriptions.retrieve(session.subscription)
    assert after.status == "active" and after.current_period_start == before.current_period_end
    update = emu.events[-1]["data"]
    assert update["previous_attributes"]["current_period_end"] == before.current_period_end
    invoices = api.v1.invoices.list(params={"subscription": after.id})
    assert [i.billing_reason for i in invoices] == ["subscription_cycle", "subscription_create"]
    assert invoices.data[0].status == "paid" and invoices.data[0].id == after.latest_invoice


def test_failed_renewal_goes_past_due_retries_then_cancels(api, emu, receiver):
    session, result = subscribe(api, emu)
    status, _ = post_json(f"{emu.url}/_sandbox/customers/{result['customer']}/card", {"outcome": "decline"})
    assert status == 200
    period_end = api.v1.subscriptions.retrieve(session.subscription).current_period_end
    start = len(emu.events)

    emu.advance(days=31)
    types = [e["type"] for e in emu.events[start:]]
    assert types == ["invoice.created", "invoice.finalized", "payment_intent.created", "charge.failed",
                     "payment_intent.payment_failed", "invoice.payment_failed", "customer.subscription.updated"]
    sub = api.v1.subscriptions.retrieve(session.subscription)
    assert sub.status == "past_due"
    assert emu.events[-1]["data"]["previous_attributes"]["status"] == "active"
    invoice = api.v1.invoices.retrieve(sub.latest_invoice)
    assert (invoice.status, invoice.attempt_count) == ("open", 1)
    assert invoice.next_payment_attempt == period_end + 3 * 86400

    emu.advance(days=3)  # retry on day 3 fails: a new charge on the invoice's PaymentIntent
    attempt = ["charge.failed", "payment_intent.payment_failed", "invoice.payment_failed"]
    assert [e["type"] for e in emu.events[start + 7:]] == attempt
    assert api.v1.invoices.retrieve(invoice.id).next_payment_attempt == period_end + 5 * 86400

    emu.advance(days=5)  # retries on day 5 and 7 fail, then the subscription is canceled
    assert [e["type"] for e in emu.events[start + 10:]] == attempt + attempt + [
        "invoice.marked_uncollectible", "customer.subscription.deleted"]
    sub = api.v1.subscriptions.retrieve(session.subscription)
    assert sub.status == "canceled" and sub.cancellation_details.reason == "payment_failed"
    assert api.v1.invoices.retrieve(invoice.id).status == "uncollectible"
    assert api.v1.subscriptions.list(params={"customer": result["customer"]}).data == []
    assert [s.id for s in api.v1.subscriptions.list(params={"customer": result["customer"], "status": "canceled"})] \
        == [sub.id]
    assert emu.wait_idle(5) and receiver.accepted_types()[-1] == "customer.subscription.deleted"


def test_paying_a_past_due_invoice_after_fixing_the_card_reactivates(api, emu):
    session, result = subscribe(api, emu)
    emu.set_card(result["customer"], "decline")
    emu.advance(days=31)
    sub = api.v1.subscriptions.retrieve(session.subscription)
    with pytest.raises(stripe.CardError) as declined:
        api.v1.invoices.pay(sub.latest_invoice)
    assert declined.value.code == "card_declined"

    emu.set_card(result["customer"], card="4242424242424242")
    start = len(emu.events)
    paid = api.v1.invoices.pay(sub.latest_invoice)
    assert paid.status == "paid"
    assert [e["type"] for e in emu.events[start:]] == ["charge.succeeded", "payment_intent.succeeded", "invoice.paid",
                                                       "invoice.payment_succeeded", "customer.subscription.updated"]
    assert api.v1.subscriptions.retrieve(sub.id).status == "active"
    with pytest.raises(stripe.InvalidRequestError):
        api.v1.invoices.pay(sub.latest_invoice)


def test_default_card_that_declines_fails_the_renewal(api, emu):
    session, result = subscribe(api, emu)
    emu.set_card(result["customer"], card="4000 0000 0000 0341")
    emu.advance(days=31)
    assert api.v1.subscriptions.retrieve(session.subscription).status == "past_due"


def test_cancel_at_period_end_ends_the_subscription_at_renewal(api, emu):
    session, _ = subscribe(api, emu)
    sub = api.v1.subscriptions.update(session.subscription, params={"cancel_at_period_end": True,
                                                                      "metadata": {"reason": "too pricey"}})
    assert sub.cancel_at_period_end and sub.cancel_at == sub.current_period_end
    previous = emu.events[-1]["data"]["previous_attributes"]
    assert previous["cancel_at_period_end"] is False and previous["metadata"] == {"attempt": "attempt-token-1",
                                                                                  "plan": "pro"}
    emu.advance(days=32)
    assert emu.events[-1]["type"] == "customer.subscription.deleted"
    assert api.v1.subscriptions.retrieve(sub.id).status == "canceled"


def test_cancel_now_with_delete(api, emu):
    session, _ = subscribe(api, emu)
    canceled = api.v1.subscriptions.cancel(session.subscription)
    assert canceled.status == "canceled" and canceled.ended_at
    assert emu.events[-1]["type"] == "customer.subscription.deleted"


def test_portal_page_cancels_at_period_end(api, emu):
    session, result = subscribe(api, emu)
    portal = api.v1.billing_portal.sessions.create(params={"customer": result["customer"],
                                                              "return_url": "https://console.test/manage"})
    assert portal.url == f"{emu.url}/portal/{portal.id}"
    status, page = get(portal.url)
    assert status == 200 and b"Cancel subscription" in page
    status, _, page = submit_form(portal.url, {"action": "cancel", "subscription": session.subscription})
    assert status == 200 and "will end on" in page
    assert api.v1.subscriptions.retrieve(session.subscription).cancel_at_period_end is True
    assert emu.events[-1]["type"] == "customer.subscription.updated"


# -- API behaviour ---------------------------------------------------------------------------------
def test_idempotency_key_replays_the_first_response(api, emu):
    options = {"idempotency_key": "create-ada-1"}
    first = api.v1.customers.create(params={"email": "ada@example.com"}, options=options)
    second = api.v1.customers.create(params={"email": "ada@example.com"}, options=options)
    assert first.id == second.id
    assert len(api.v1.customers.list(params={"email": "ada@example.com"}).data) == 1
    assert [e["type"] for e in emu.events] == ["customer.created"]
    assert emu.events[0]["request"]["idempotency_key"] == "create-ada-1"
    with pytest.raises(stripe.IdempotencyError):
        api.v1.customers.create(params={"email": "other@example.com"}, options=options)


def test_unsupported_route_answers_stripe_error_json(emu):
    request = urllib.request.Request(f"{emu.url}/v1/payouts", headers={"Authorization": f"Bearer {API_KEY}"})
    with pytest.raises(urllib.error.HTTPError) as answer:
        urllib.request.urlopen(request, timeout=5)
    assert answer.value.code == 404
    error = json.load(answer.value)["error"]
    assert error["type"] == "invalid_request_error"
    assert "Unrecognized request URL (GET: /v1/payouts)" in error["message"]


def test_missing_or_invalid_api_key_is_refused_with_401(emu):
    with pytest.raises(urllib.error.HTTPError) as missing:
        urllib.request.urlopen(f"{emu.url}/v1/customers", timeout=5)
    assert missing.value.code == 401 and "did not provide an API key" in json.load(missing.value)["error"]["message"]
    bad = stripe.StripeClient("sk_live_" + "x" * 24, base_addresses={"api": emu.url}, max_network_retries=0)
    with pytest.raises(stripe.AuthenticationError) as invalid:
        bad.v1.customers.list()
    assert "Invalid API Key provided" in str(invalid.value) and "x" * 24 not in str(invalid.value)


def test_lists_paginate_newest_first(api, emu):
    created = [api.v1.customers.create(params={"email": f"c{i}@example.com"}).id for i in range(5)]
    page = api.v1.customers.list(params={"limit": 2})
    assert [c.id for c in page] == created[::-1][:2] and page.has_more and page.url == "/v1/customers"
    rest = api.v1.customers.list(params={"limit": 2, "starting_after": page.data[-1].id})
    assert [c.id for c in rest] == created[::-1][2:4]
    assert [c.id for c in page.auto_paging_iter()] == created[::-1]
    with pytest.raises(stripe.InvalidRequestError):
        api.v1.customers.list(params={"limit": 101})


def test_events_filter_by_type_created_and_delivery_success(api, emu, receiver):
    receiver.statuses = [500] * 5  # the first event fails every attempt
    api.v1.customers.create(params={"email": "a@example.com"})
    assert emu.wait_idle(5)
    cutoff = emu.now() + 10
    emu.advance(seconds=20)
    api.v1.customers.create(params={"email": "b@example.com"})
    assert emu.wait_idle(5)
    failed = api.v1.events.list(params={"delivery_success": False})
    assert [e.data.object.email for e in failed] == ["a@example.com"]
    ok = api.v1.events.list(params={"delivery_success": True, "type": "customer.created"})
    assert [e.data.object.email for e in ok] == ["b@example.com"]
    recent = api.v1.events.list(params={"created": {"gte": cutoff}})
    assert [e.data.object.email for e in recent] == ["b@example.com"]
    first = api.v1.events.list(params={"limit": 1})
    older = api.v1.events.list(params={"limit": 1, "starting_after": first.data[0].id})
    assert older.data[0].data.object.email == "a@example.com"
    assert api.v1.events.retrieve(older.data[0].id).data.object.email == "a@example.com"
    delivered = json.loads(get(f"{emu.url}/_sandbox/events/delivered")[1])["data"]
    assert [d["status"] for d in delivered] == [500] * 5 + [200]


def test_module_level_stripe_with_api_base_works_like_dj_stripe_uses_it(emu, monkeypatch):
    monkeypatch.setattr(stripe, "api_base", emu.url)
    monkeypatch.setattr(stripe, "api_key", API_KEY)
    assert stripe.Account.retrieve().id == "acct_sandbox"
    price = stripe.Price.retrieve("price_sandbox_team", expand=["product"])
    assert (price.unit_amount, price.currency, price.recurring.interval) == (2900, "usd", "month")
    assert price.product.name == "Billing Console Team"
    listed = {p.id for p in stripe.Price.list(active=True).auto_paging_iter()}
    assert listed >= {"price_sandbox_pro", "price_sandbox_team"}


# -- webhooks --------------------------------------------------------------------------------------
def test_webhooks_are_signed_like_stripe_and_verify_with_construct_event(api, emu, receiver):
    api.v1.customers.create(params={"email": "ada@example.com"})
    assert emu.wait_idle(5)
    delivery = receiver.received[0]
    event = stripe.Webhook.construct_event(delivery["body"], delivery["signature"], WEBHOOK_SECRET)
    assert event.type == "customer.created" and event.data.object.email == "ada@example.com"
    with pytest.raises(stripe.SignatureVerificationError):
        stripe.Webhook.construct_event(delivery["body"], delivery["signature"], "whsec_wrong")


def test_sign_payload_matches_stripe_verification():
    body = json.dumps({"id": "evt_1", "object": "event"}).encode()
    header = sign_payload(body, WEBHOOK_SECRET, timestamp=int(time.time()))
    assert stripe.WebhookSignature.verify_header(body.decode(), header, WEBHOOK_SECRET, tolerance=300)
    stale = sign_payload(body, WEBHOOK_SECRET, timestamp=int(time.time()) - 3600)
    with pytest.raises(stripe.SignatureVerificationError):
        stripe.WebhookSignature.verify_header(body.decode(), stale, WEBHOOK_SECRET, tolerance=300)


def test_failed_delivery_is_retried_until_2xx(api, emu, receiver):
    receiver.statuses = [500, 503]
    api.v1.customers.create(params={"email": "ada@example.com"})
    assert emu.wait_idle(5)
    assert [r["status"] for r in receiver.received] == [500, 503, 200]
    assert len(api.v1.events.list(params={"delivery_success": True}).data) == 1


def test_duplicate_fault_delivers_every_event_twice(api, emu, receiver):
    post_json(f"{emu.url}/_sandbox/faults", {"duplicate": True})
    api.v1.customers.create(params={"email": "ada@example.com"})
    assert emu.wait_idle(5)
    ids = [e["id"] for e in receiver.accepted()]
    assert len(ids) == 2 and ids[0] == ids[1]


def test_reorder_fault_delivers_a_burst_in_reverse(api, emu, receiver):
    emu.set_faults(reorder=True)
    subscribe(api, emu)
    assert emu.wait_idle(5)
    types = receiver.accepted_types()
    assert types[0] == "invoice.payment_succeeded" and types[-1] == "customer.created"
    assert sorted(types) == sorted(e["type"] for e in emu.events)


def test_hold_queues_until_flush_and_delay_postpones(api, emu, receiver):
    status, faults = post_json(f"{emu.url}/_sandbox/faults", {"hold": True})
    assert status == 200 and faults["hold"] is True
    api.v1.customers.create(params={"email": "late@example.com"})
    assert emu.wait_idle(1) and receiver.received == []
    assert api.v1.events.list(params={"delivery_success": False}).data[0].type == "customer.created"
    assert post_json(f"{emu.url}/_sandbox/webhook/flush", {}) == (200, {"flushed": 1})
    assert emu.wait_idle(5) and receiver.accepted_types() == ["customer.created"]

    emu.set_faults(reset=True, delay_seconds=0.3)
    started = time.monotonic()
    api.v1.customers.create(params={"email": "later@example.com"})
    assert emu.wait_idle(5) and time.monotonic() - started >= 0.3
    assert len(receiver.accepted()) == 2


def test_webhook_target_can_be_set_at_runtime(receiver):
    with StripeEmulator(webhook_retry_seconds=0.01) as emulator:
        api = stripe.StripeClient(API_KEY, base_addresses={"api": emulator.url}, max_network_retries=0)
        api.v1.customers.create(params={"email": "nobody-listens@example.com"})
        status, state = post_json(f"{emulator.url}/_sandbox/webhook", {"url": receiver.url, "secret": "whsec_x"})
        assert status == 200 and state == {"url": receiver.url, "has_secret": True, "held": 0}
        api.v1.customers.create(params={"email": "heard@example.com"})
        assert emulator.wait_idle(5)
        assert [e["data"]["object"]["email"] for e in receiver.accepted()] == ["heard@example.com"]
        stripe.Webhook.construct_event(receiver.received[0]["body"], receiver.received[0]["signature"], "whsec_x")


# -- API faults ------------------------------------------------------------------------------------
def test_api_500_fault_answers_api_error_then_recovers(api, emu):
    post_json(f"{emu.url}/_sandbox/faults", {"api_500": 1})
    with pytest.raises(stripe.APIError):
        api.v1.customers.list()
    assert api.v1.customers.list().data == []
    retrying = stripe.StripeClient(API_KEY, base_addresses={"api": emu.url}, max_network_retries=2)
    emu.set_faults(api_500=1)
    assert retrying.v1.customers.create(params={"email": "x@example.com"}).email == "x@example.com"
    assert len(emu.list_objects("customer")) == 1


def test_api_timeout_fault_stalls_then_drops(api, emu):
    emu.set_faults(api_timeout=1, timeout_seconds=0.2)
    started = time.monotonic()
    with pytest.raises(stripe.APIConnectionError):
        api.v1.customers.list()
    assert time.monotonic() - started >= 0.2
    assert api.v1.customers.list().data == []


def test_bad_fault_and_clock_input_is_rejected(emu):
    assert post_json(f"{emu.url}/_sandbox/faults", {"duplicate": 2})[0] == 400
    assert post_json(f"{emu.url}/_sandbox/faults", {"explode": True})[0] == 400
    assert post_json(f"{emu.url}/_sandbox/clock/advance", {"days": -1})[0] == 400
    assert post_json(f"{emu.url}/_sandbox/clock/advance", {})[0] == 400
    assert post_json(f"{emu.url}/_sandbox/customers/cus_missing/card", {"outcome": "decline"})[0] == 404


# -- concurrency and CLI ---------------------------------------------------------------------------
def test_concurrent_checkouts_are_consistent(api, emu):
    sessions = [create_session(api, customer_email=f"u{i}@example.com") for i in range(8)]
    threads = [threading.Thread(target=lambda s=s: submit_form(s.url, {"card": "4242424242424242"}))
               for s in sessions]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert len(emu.list_objects("subscription")) == 8
    assert all(api.v1.checkout.sessions.retrieve(s.id).status == "complete" for s in sessions)


def test_cli_serves_and_advances_the_clock():
    process = subprocess.Popen([sys.executable, "-m", "sandbox.stripe", "serve", "--port", "0"], cwd=ROOT,
                               stdout=subprocess.PIPE, text=True)
    try:
        line = process.stdout.readline()
        assert "Stripe sandbox listening on http://127.0.0.1:" in line
        url = line.split("listening on ")[1].split()[0]
        advanced = subprocess.run([sys.executable, "-m", "sandbox.stripe", "clock", "advance", "--days", "2",
                                   "--url", url], cwd=ROOT, capture_output=True, text=True, timeout=30)
        assert advanced.returncode == 0, advanced.stderr
        status, clock = get(f"{url}/_sandbox/clock")
        assert json.loads(clock)["offset_seconds"] >= 2 * 86400 - 2
    finally:
        process.terminate()
        process.wait(timeout=10)


# -- more of the API and the hosted pages ----------------------------------------------------------
def test_webhook_endpoints_created_by_api_get_their_events_signed_with_their_secret(api, emu, receiver):
    endpoint = api.v1.webhook_endpoints.create(params={"url": receiver.url + "/only-invoices",
                                                       "enabled_events": ["invoice.paid"]})
    assert endpoint.secret.startswith("whsec_") and endpoint.status == "enabled"
    assert "secret" not in api.v1.webhook_endpoints.retrieve(endpoint.id)
    assert {we.id for we in api.v1.webhook_endpoints.list()} == {endpoint.id, "we_sandbox"}
    subscribe(api, emu)
    assert emu.wait_idle(5)
    mine = [r for r in receiver.received if r["status"] == 200 and b'"invoice.paid"' in r["body"]]
    assert len(mine) == 2  # one for the sandbox endpoint, one for the API-created endpoint
    verified = 0
    for delivery in mine:
        try:
            stripe.Webhook.construct_event(delivery["body"], delivery["signature"], endpoint.secret)
            verified += 1
        except stripe.SignatureVerificationError:
            stripe.Webhook.construct_event(delivery["body"], delivery["signature"], WEBHOOK_SECRET)
    assert verified == 1
    assert api.v1.webhook_endpoints.delete(endpoint.id).deleted is True


def test_customer_and_subscription_search(api, emu):
    session, result = subscribe(api, emu)
    api.v1.customers.create(params={"email": "other@example.com", "metadata": {"console_id": "42"}})
    found = api.v1.customers.search(params={"query": "email:'ada@example.com'"})
    assert [c.id for c in found] == [result["customer"]]
    assert [c.email for c in api.v1.customers.search(params={"query": "metadata['console_id']:'42'"})] \
        == ["other@example.com"]
    subs = api.v1.subscriptions.search(params={"query": "metadata['attempt']:'attempt-token-1' AND status:'active'"})
    assert [s.id for s in subs] == [session.subscription]
    with pytest.raises(stripe.InvalidRequestError):
        api.v1.customers.search(params={"query": "nonsense"})


def test_portal_card_update_pays_the_past_due_invoice(api, emu):
    session, result = subscribe(api, emu)
    emu.set_card(result["customer"], card="4000000000000341")
    emu.advance(days=31)
    portal = api.v1.billing_portal.sessions.create(params={"customer": result["customer"]})
    status, _, page = submit_form(portal.url, {"action": "card", "card": "4242 4242 4242 4242"})
    assert status == 200 and "ending in 4242" in page
    sub = api.v1.subscriptions.retrieve(session.subscription)
    assert sub.status == "active" and api.v1.invoices.retrieve(sub.latest_invoice).status == "paid"


def test_hosted_invoice_page_takes_a_payment(api, emu):
    session, result = subscribe(api, emu)
    emu.set_card(result["customer"], "decline")
    emu.advance(days=31)
    invoice = api.v1.invoices.retrieve(api.v1.subscriptions.retrieve(session.subscription).latest_invoice)
    status, _, page = submit_form(invoice.hosted_invoice_url, {"card": "4000 0000 0000 0341"})
    assert "Your card was declined." in page
    status, _, page = submit_form(invoice.hosted_invoice_url, {"card": "4242 4242 4242 4242"})
    assert status == 200 and api.v1.invoices.retrieve(invoice.id).status == "paid"
    assert api.v1.subscriptions.retrieve(session.subscription).status == "active"
