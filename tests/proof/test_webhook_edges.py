"""Webhook edge cases beyond tests/stripe/test_webhook_view.py: fuzzed signature headers and bodies
(never a 500, nothing stored unless it is a genuine event), future timestamps, a too-large body
refused before it is read, and unknown event types acknowledged, stored and processed (not failed)."""
import io
import json
import time

import pytest
from django.test import RequestFactory
from hypothesis import given
from hypothesis import strategies as st

from billing_console.models import WebhookEvent
from billing_console.stripe import api
from sandbox.stripe import sign_payload
from tests.stripe_events import stripe_event
from tests.stripe.conftest import WEBHOOK_SECRET, WEBHOOK_URL
from tests.proof.fuzz import FUZZ, assert_rejected, json_value, row_counts

pytestmark = pytest.mark.django_db

header_part = st.one_of(
    st.integers(min_value=-10, max_value=2 ** 40).map(lambda n: f"t={n}"),
    st.text(alphabet="0123456789abcdef", max_size=70).map(lambda h: f"v1={h}"),
    st.text(alphabet=st.characters(min_codepoint=0x20, max_codepoint=0xFF), max_size=30),
    st.just("v0=deadbeef"), st.just("t="), st.just("v1="), st.just(","),
)


def event(**overrides) -> dict:
    return stripe_event("customer.updated", obj={"id": "cus_x", "object": "customer"}, event_id="evt_proof_0001",
                        **overrides)


@FUZZ
@given(parts=st.lists(header_part, max_size=6))
def test_fuzzed_signature_headers_are_400_and_store_nothing(client, stripe_settings, parts):
    before = row_counts()
    body = json.dumps(event()).encode()
    response = client.post(WEBHOOK_URL, body, content_type="application/json",
                           HTTP_STRIPE_SIGNATURE=",".join(parts))
    assert response.status_code == 400
    assert_rejected(response, before)


@FUZZ
@given(payload=st.one_of(json_value.map(lambda v: json.dumps(v).encode()), st.binary(max_size=300)))
def test_signed_bodies_that_are_not_stripe_events_are_400(client, stripe_settings, payload):
    before = row_counts()
    response = client.post(WEBHOOK_URL, payload, content_type="application/json",
                           HTTP_STRIPE_SIGNATURE=sign_payload(payload, WEBHOOK_SECRET))
    assert_rejected(response, before)


@FUZZ
@given(overrides=st.fixed_dictionaries({}, optional={
    "id": st.one_of(st.integers(), st.text(max_size=20), st.just("evt_")),
    "object": st.one_of(st.none(), st.text(max_size=10)),
    "type": st.one_of(st.none(), st.integers(), st.lists(st.text(max_size=3), max_size=2)),
    "data": st.one_of(st.none(), st.text(max_size=5), st.lists(st.integers(), max_size=2)),
}).filter(bool))
def test_signed_events_with_broken_envelopes_are_400(client, stripe_settings, overrides):
    before = row_counts()
    body = json.dumps(event(**overrides)).encode()
    response = client.post(WEBHOOK_URL, body, content_type="application/json",
                           HTTP_STRIPE_SIGNATURE=sign_payload(body, WEBHOOK_SECRET))
    if response.status_code == 200:  # the overrides happened to keep a valid envelope
        return
    assert_rejected(response, before)


def test_timestamp_in_the_future_beyond_the_tolerance_is_400(client, stripe_settings):
    body = json.dumps(event()).encode()
    response = client.post(WEBHOOK_URL, body, content_type="application/json",
                           HTTP_STRIPE_SIGNATURE=sign_payload(body, WEBHOOK_SECRET, int(time.time()) + 3600))
    assert response.status_code == 400
    assert "tolerance" in response.json()["error"]["message"]
    assert not WebhookEvent.objects.exists()


class Unreadable(io.RawIOBase):
    """A request stream that fails the test if the view reads it."""

    def read(self, *args):
        raise AssertionError("the body was read")

    readinto = readline = read


def test_a_declared_huge_body_is_413_without_being_read(stripe_settings):
    request = RequestFactory().generic("POST", WEBHOOK_URL, b"", content_type="application/json")
    request.META["CONTENT_LENGTH"] = str(stripe_settings.STRIPE_WEBHOOK_MAX_BYTES + 1)
    request.META["wsgi.input"] = Unreadable()
    request.META["HTTP_STRIPE_SIGNATURE"] = "t=1,v1=00"
    response = api.webhook(request)
    assert response.status_code == 413
    assert not WebhookEvent.objects.exists()


@pytest.mark.parametrize("event_type", ["radar.early_fraud_warning.created", "v2.core.event_destination.ping",
                                        "made.up.type"])
def test_unknown_event_types_are_acknowledged_stored_and_ignored(post_event, stripe_settings, event_type):
    response = post_event(event(id=f"evt_unknown_{event_type}", type=event_type))
    assert response.status_code == 200
    row = WebhookEvent.objects.get(stripe_id=f"evt_unknown_{event_type}")
    assert row.status == WebhookEvent.Status.IGNORED
    assert row.last_error == ""


def test_a_valid_signature_with_a_malformed_timestamp_part_is_400(client, stripe_settings):
    """Stripe's parser reads `t=<ts>=junk` as <ts> (it splits on "=" twice), so the signature verifies."""
    body = json.dumps(event()).encode()
    signed = sign_payload(body, WEBHOOK_SECRET)  # t=<ts>,v1=<sig>
    timestamp, rest = signed.split(",", 1)
    response = client.post(WEBHOOK_URL, body, content_type="application/json",
                           HTTP_STRIPE_SIGNATURE=f"{timestamp}=junk,{rest}")
    assert response.status_code == 400
    assert not WebhookEvent.objects.exists()


@pytest.mark.parametrize("created", [10 ** 20, -(10 ** 20), "soon", 1.5e300, [1], True])
def test_a_signed_event_with_an_out_of_range_or_malformed_created_is_400(client, stripe_settings, created):
    body = json.dumps(event(created=created)).encode()
    response = client.post(WEBHOOK_URL, body, content_type="application/json",
                           HTTP_STRIPE_SIGNATURE=sign_payload(body, WEBHOOK_SECRET))
    assert response.status_code == 400
    assert "created" in response.json()["error"]["message"]
    assert not WebhookEvent.objects.exists()
