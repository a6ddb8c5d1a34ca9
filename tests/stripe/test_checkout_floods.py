"""Checkout floods: the JSON API and the pricing form are rate limited per client address and per email,
counting every request before validation; the API takes only application/json; an address gets at most
one abandoned-checkout follow-up a day."""
import pytest
from django.core import mail

from billing_console.models import AuditEvent, CheckoutAttempt

pytestmark = pytest.mark.django_db
URL = "/api/billing/checkout"


def test_forty_checkout_posts_from_one_address_get_a_429(client, emulator):
    codes = [client.post(URL, {"email": f"v{n}@example.com", "plan": "pro"}, content_type="application/json").status_code
             for n in range(40)]
    assert 429 in codes
    assert codes.count(200) <= 20 and set(codes) == {200, 429}
    sessions = [r for r in emulator.requests if r["method"] == "POST"]
    assert len(sessions) == codes.count(200) == CheckoutAttempt.objects.count()


def test_invalid_requests_count_too(client, stripe_settings, settings):
    settings.CHECKOUT_RATE_LIMIT_PER_CLIENT = 3
    codes = [client.post(URL, b"{", content_type="application/json").status_code for _ in range(4)]
    assert codes == [400, 400, 400, 429]
    limited = client.post(URL, {"email": "a@example.com", "plan": "pro"}, content_type="application/json")
    assert limited.status_code == 429 and int(limited["Retry-After"]) > 0
    assert limited.json()["error"]["code"] == "RATE_LIMITED"
    assert not CheckoutAttempt.objects.exists()


def test_one_email_is_limited_across_client_addresses(client, emulator, settings):
    settings.CHECKOUT_RATE_LIMIT_PER_EMAIL = 2
    codes = [client.post(URL, {"email": " Victim@Example.com", "plan": "pro"}, content_type="application/json",
                         REMOTE_ADDR=f"10.0.0.{n}").status_code for n in range(4)]
    assert codes == [200, 200, 429, 429]
    assert CheckoutAttempt.objects.count() == 2


@pytest.mark.parametrize("content_type", ["text/plain", "application/x-www-form-urlencoded", "multipart/form-data; boundary=x", ""])
def test_the_api_takes_only_json(client, stripe_settings, content_type):
    response = client.post(URL, b'{"email": "a@example.com", "plan": "pro"}', content_type=content_type)
    assert response.status_code == 415
    assert response.json()["error"]["code"] == "UNSUPPORTED_MEDIA_TYPE"
    assert not CheckoutAttempt.objects.exists()


def test_json_with_a_charset_is_accepted(client, emulator):
    response = client.post(URL, b'{"email": "a@example.com", "plan": "pro"}', content_type="application/json; charset=utf-8")
    assert response.status_code == 200


def test_the_pricing_form_is_rate_limited_per_client(client, emulator, settings):
    settings.CHECKOUT_RATE_LIMIT_PER_CLIENT = 3
    codes = [client.post("/checkout", {"email": f"f{n}@example.com", "plan": "pro"}).status_code for n in range(3)]
    codes += [client.post("/checkout", {"email": "not-an-email", "plan": "pro"}).status_code]
    assert codes == [303, 303, 303, 429]
    assert "Too many" in client.post("/checkout", {"email": "x@example.com", "plan": "pro"}).content.decode()
    assert CheckoutAttempt.objects.count() == 3


def test_the_pricing_form_is_rate_limited_per_email(client, emulator, settings):
    settings.CHECKOUT_RATE_LIMIT_PER_EMAIL = 1
    first = client.post("/checkout", {"email": "same@example.com", "plan": "pro"})
    second = client.post("/checkout", {"email": "SAME@example.com", "plan": "pro"}, REMOTE_ADDR="10.1.1.1")
    assert (first.status_code, second.status_code) == (303, 429)


def test_one_follow_up_per_address_per_day(client, emulator, deliver):
    for _ in range(3):
        assert client.post(URL, {"email": "grace@example.com", "plan": "pro"},
                           content_type="application/json").status_code == 200
    client.post(URL, {"email": "other@example.com", "plan": "pro"}, content_type="application/json")
    emulator.advance(hours=25)
    deliver([e for e in emulator.events if e["type"] == "checkout.session.expired"])

    assert sorted(m.to[0] for m in mail.outbox) == ["grace@example.com", "other@example.com"]
    statuses = sorted(CheckoutAttempt.objects.values_list("follow_up_status", flat=True))
    assert statuses == ["sent", "sent", "skipped", "skipped"]
    skipped = AuditEvent.objects.filter(action="checkout.follow_up_skipped")
    assert skipped.count() == 2 and skipped.first().data["reason"] == "one_per_address_per_day"
