"""POST /api/billing/usage: auth, validation, per-item and atomic results, limits, idempotency."""
import json
import threading
from datetime import timedelta

import pytest
from django.db import connection
from django.test import Client
from django.utils import timezone

from billing_console.models import Customer, UsageEvent

URL = "/api/billing/usage"
SECRET = "usage-secret-0123456789"


@pytest.fixture
def usage_settings(settings):
    settings.USAGE_API_SECRET = SECRET
    settings.USAGE_METERS = {"api_calls": {"event_name": "api_calls", "formula": "sum", "display_name": "API calls"}}
    return settings


@pytest.fixture
def buyer(db):
    return Customer.objects.create(email="buyer@example.com", stripe_customer_id="cus_buyer0001")


def post(client, body, secret=SECRET, **extra):
    headers = {"HTTP_AUTHORIZATION": f"Bearer {secret}"} if secret is not None else {}
    data = body if isinstance(body, (bytes, str)) else json.dumps(body)
    return client.post(URL, data=data, content_type="application/json", **headers, **extra)


def event(key="k1", **over):
    return {"customer": "buyer@example.com", "meter": "api_calls", "quantity": 5, "idempotency_key": key, **over}


@pytest.mark.django_db
def test_unset_secret_answers_503(client, settings, buyer):
    settings.USAGE_API_SECRET = ""
    assert post(client, event()).status_code == 503


@pytest.mark.django_db
@pytest.mark.parametrize("secret", [None, "wrong", ""])
def test_missing_or_wrong_secret_answers_401(client, usage_settings, buyer, secret):
    response = post(client, event(), secret=secret)
    assert response.status_code == 401
    assert response.json()["error"]["code"] == "unauthorized"
    assert not UsageEvent.objects.exists()


@pytest.mark.django_db
def test_one_event_is_accepted_once_and_its_repeat_is_a_duplicate(client, usage_settings, buyer):
    first = post(client, event())
    assert first.status_code == 202
    assert first.json() == {"accepted": 1, "duplicate": 0, "errors": []}
    again = post(client, event(quantity=9))
    assert again.json() == {"accepted": 0, "duplicate": 1, "errors": []}
    stored = UsageEvent.objects.get()
    assert (stored.customer_id, stored.meter, stored.quantity, stored.report_id) == (buyer.pk, "api_calls", 5, None)


@pytest.mark.django_db
def test_customer_by_stripe_id_decimal_quantity_and_explicit_timestamp(client, usage_settings, buyer):
    at = timezone.now() - timedelta(days=2)
    response = post(client, event(customer="cus_buyer0001", quantity="2.5", timestamp=int(at.timestamp())))
    assert response.status_code == 202, response.content
    stored = UsageEvent.objects.get()
    assert str(stored.quantity.normalize()) == "2.5"
    assert int(stored.timestamp.timestamp()) == int(at.timestamp())


@pytest.mark.django_db
@pytest.mark.parametrize("bad, field", [
    ({"quantity": -1}, "quantity"),
    ({"quantity": 1.5}, "quantity"),
    ({"quantity": "1e3"}, "quantity"),
    ({"quantity": True}, "quantity"),
    ({"idempotency_key": ""}, "idempotency_key"),
    ({"idempotency_key": "x" * 256}, "idempotency_key"),
    ({"customer": 7}, "customer"),
    ({"meter": None}, "meter"),
    ({"timestamp": "yesterday"}, "timestamp"),
    ({"timestamp": "2026-01-01T00:00:00"}, "timestamp"),  # no offset
    ({"extra": 1}, "extra"),
])
def test_malformed_field_answers_400_with_the_field(client, usage_settings, buyer, bad, field):
    response = post(client, event(**bad))
    assert response.status_code == 400
    assert response.json()["error"]["errors"][0]["field"] == field
    assert not UsageEvent.objects.exists()


@pytest.mark.django_db
def test_timestamps_older_than_35_days_or_over_5_minutes_ahead_are_refused(client, usage_settings, buyer):
    now = timezone.now()
    old = post(client, event(timestamp=int((now - timedelta(days=35, minutes=1)).timestamp())))
    ahead = post(client, event(timestamp=int((now + timedelta(minutes=6)).timestamp())))
    assert [old.json()["error"]["errors"][0]["code"], ahead.json()["error"]["errors"][0]["code"]] == ["too_old", "in_future"]
    assert post(client, event(timestamp=(now + timedelta(minutes=4)).isoformat())).status_code == 202


@pytest.mark.django_db
def test_a_malformed_item_rejects_the_whole_batch(client, usage_settings, buyer):
    response = post(client, {"events": [event("a"), event("b", quantity="x"), event("c")]})
    assert response.status_code == 400
    assert [e["index"] for e in response.json()["error"]["errors"]] == [1]
    assert not UsageEvent.objects.exists()


@pytest.mark.django_db
def test_unknown_customer_or_meter_is_a_422_item_beside_the_stored_ones(client, usage_settings, buyer):
    Customer.objects.create(email="nobill@example.com")  # no Stripe customer yet
    response = post(client, {"events": [event("a"), event("b", meter="nope"), event("c", customer="who@example.com"),
                                        event("d", customer="nobill@example.com"), event("e")]})
    assert response.status_code == 202
    body = response.json()
    assert (body["accepted"], body["duplicate"]) == (2, 0)
    assert [(e["index"], e["status"], e["code"]) for e in body["errors"]] == [
        (1, 422, "unknown_meter"), (2, 422, "unknown_customer"), (3, 422, "customer_not_billable")]
    assert set(UsageEvent.objects.values_list("idempotency_key", flat=True)) == {"a", "e"}


@pytest.mark.django_db
def test_atomic_batch_with_an_unknown_customer_stores_nothing(client, usage_settings, buyer):
    response = post(client, {"atomic": True, "events": [event("a"), event("b", customer="cus_unknown")]})
    assert response.status_code == 422
    assert response.json()["error"]["errors"][0]["field"] == "customer"
    assert not UsageEvent.objects.exists()


@pytest.mark.django_db
def test_single_unknown_meter_answers_422(client, usage_settings, buyer):
    assert post(client, event(meter="nope")).status_code == 422


@pytest.mark.django_db
def test_batch_counts_duplicates_inside_the_batch_and_against_earlier_ones(client, usage_settings, buyer):
    post(client, event("a"))
    response = post(client, {"events": [event("a"), event("b"), event("b"), event("c")]})
    assert response.json() == {"accepted": 2, "duplicate": 2, "errors": []}
    assert UsageEvent.objects.count() == 3


@pytest.mark.django_db
def test_body_over_the_limit_answers_413(client, usage_settings, buyer):
    usage_settings.USAGE_MAX_BODY_BYTES = 200
    response = post(client, {"events": [event(f"k{i}") for i in range(10)]})
    assert response.status_code == 413
    assert not UsageEvent.objects.exists()


@pytest.mark.django_db
def test_more_events_than_allowed_answers_413(client, usage_settings, buyer):
    usage_settings.USAGE_MAX_EVENTS_PER_REQUEST = 3
    assert post(client, {"events": [event(f"k{i}") for i in range(4)]}).status_code == 413


@pytest.mark.django_db
@pytest.mark.parametrize("body", [b"not json", b"[1, 2]", b'{"events": {}}', b'{"events": []}',
                                  b'{"events": [1], "atomic": "yes"}', b'{"events": [], "other": 1}'])
def test_bad_bodies_answer_400(client, usage_settings, buyer, body):
    assert post(client, body).status_code == 400


@pytest.mark.django_db
def test_rate_limited_per_client(client, usage_settings, buyer):
    usage_settings.USAGE_RATE_LIMIT_PER_CLIENT = 2
    codes = [post(client, event(f"k{i}")).status_code for i in range(3)]
    assert codes == [202, 202, 429]
    other = post(client, event("k9"), REMOTE_ADDR="10.0.0.9")
    assert other.status_code == 202


@pytest.mark.django_db(transaction=True)
@pytest.mark.skipif(connection.vendor != "postgresql",
                    reason="concurrent duplicates need PostgreSQL (SQLite serializes every writer)")
def test_concurrent_duplicates_on_postgresql_are_accepted_once(usage_settings):
    Customer.objects.create(email="buyer@example.com", stripe_customer_id="cus_buyer0001")
    barrier = threading.Barrier(8)
    results = []

    def send():
        from django.db import connection as thread_connection
        try:
            barrier.wait()
            response = post(Client(), {"events": [event("same"), event("same-too")]})
            results.append(response.json())
        finally:
            thread_connection.close()

    threads = [threading.Thread(target=send) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert sum(r["accepted"] for r in results) == 2
    assert sum(r["duplicate"] for r in results) == 14
    assert UsageEvent.objects.count() == 2
