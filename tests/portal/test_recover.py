import pytest
from django.core import mail

from billing_console.models import AuditEvent
from tests.core.factories import SubscribedCustomerFactory

pytestmark = pytest.mark.django_db


@pytest.fixture(autouse=True)
def _fresh_cache():
    from django.core.cache import cache

    cache.clear()


def test_a_known_email_gets_a_fresh_manage_link(client):
    customer = SubscribedCustomerFactory(email="known@example.com")
    response = client.post("/recover", {"email": "Known@Example.com"})
    assert response.status_code == 303 and response["Location"] == "/recover?sent=1"
    assert len(mail.outbox) == 1 and mail.outbox[0].to == ["known@example.com"]
    assert "/manage/" in mail.outbox[0].body
    link = mail.outbox[0].body.split("/manage/")[1].split("/")[0]
    assert client.get(f"/manage/{link}/").status_code == 200
    assert AuditEvent.objects.filter(customer=customer, action="customer.manage_link_emailed").exists()


def test_an_unknown_email_gets_the_same_answer_and_no_mail(client):
    SubscribedCustomerFactory(email="known@example.com")
    known = client.post("/recover", {"email": "known@example.com"})
    unknown = client.post("/recover", {"email": "stranger@example.com"})
    assert (unknown.status_code, unknown["Location"]) == (known.status_code, known["Location"])
    assert [m.to for m in mail.outbox] == [["known@example.com"]]
    page = client.get(unknown["Location"]).content.decode()
    assert "If this email belongs to a subscription" in page


def test_a_bad_email_is_a_field_error(client):
    response = client.post("/recover", {"email": "not-an-email"})
    assert response.status_code == 400
    assert "Enter a valid email address." in response.content.decode()
    assert not mail.outbox


def test_rate_limited_per_address(client, settings):
    settings.RECOVER_RATE_LIMIT_PER_EMAIL = 2
    SubscribedCustomerFactory(email="known@example.com")
    codes = [client.post("/recover", {"email": "known@example.com"}).status_code for _ in range(3)]
    assert codes == [303, 303, 429]
    assert len(mail.outbox) == 2
    limited = client.post("/recover", {"email": "known@example.com"})
    assert int(limited["Retry-After"]) > 0 and "Too many requests" in limited.content.decode()


def test_rate_limited_per_client_across_addresses(client, settings):
    settings.RECOVER_RATE_LIMIT_PER_CLIENT = 3
    codes = [client.post("/recover", {"email": f"u{n}@example.com"}).status_code for n in range(4)]
    assert codes == [303, 303, 303, 429]
    other_client = client.post("/recover", {"email": "z@example.com"}, REMOTE_ADDR="10.0.0.9")
    assert other_client.status_code == 303
