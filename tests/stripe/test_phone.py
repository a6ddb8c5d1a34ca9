"""The customer's phone for WhatsApp dunning: checkout collects it when WhatsApp is configured, Stripe's phone
(checkout, customer.updated) lands normalised to E.164 (an invalid one is recorded, never a failed event), the
manage page lets the customer set it with consent, and support's edit is audited with old and new values."""
import pytest
from billing_console.errors import ServiceError
from django.urls import reverse

from billing_console.models import AuditEvent, Customer, WebhookEvent
from billing_console.phones import customer_change_phone, phone_e164
from billing_console.stripe.gateway import client as stripe_api
from tests.stripe.test_checkout_flow import start_checkout
from tests.core.factories import CustomerFactory

pytestmark = pytest.mark.django_db


@pytest.fixture
def whatsapp(settings):
    from dunning.services import dunning_policy_ensure_default

    dunning_policy_ensure_default()  # its SOFT_D+1 and SOFT_D+7 steps are WhatsApp (a migration makes it)
    settings.EVOLUTION_API_URL = "http://127.0.0.1:9"
    settings.EVOLUTION_API_KEY = "evo-test-key"
    settings.EVOLUTION_INSTANCE = "billing"
    return settings


@pytest.fixture
def manage_url():
    from billing_console.manage_links import manage_link_token

    return lambda customer, suffix="": f"/manage/{manage_link_token(customer)}/{suffix}"


@pytest.mark.parametrize("raw, expected", [
    ("+55 11 99999-9999", "+5511999999999"), ("+1 (415) 555-0100", "+14155550100"), ("+5511999999999", "+5511999999999"),
    ("11 99999-9999", None), ("+1 555", None), ("not a phone", None), ("", None), (None, None), (12345, None),
    ("+" + "9" * 80, None),
])
def test_normalisation(raw, expected, settings):
    settings.PHONE_DEFAULT_REGION = ""
    assert phone_e164(raw) == expected


def test_a_default_region_reads_a_local_number(settings):
    settings.PHONE_DEFAULT_REGION = "BR"
    assert phone_e164("(11) 99999-9999") == "+5511999999999"


def test_checkout_asks_for_the_phone_only_when_whatsapp_is_configured(client, emulator, settings):
    from dunning.models import DunningStep
    from dunning.services import dunning_policy_ensure_default

    def collects(email):
        attempt, _ = start_checkout(client, email=email)
        return emulator.get(attempt.stripe_session_id)["phone_number_collection"]["enabled"]

    dunning_policy_ensure_default()
    assert collects("a@example.com") is False  # no Evolution API
    settings.EVOLUTION_API_URL, settings.EVOLUTION_API_KEY = "http://127.0.0.1:9", "evo-test-key"
    assert collects("b@example.com") is True
    DunningStep.objects.filter(channel="whatsapp").update(channel="email")
    assert collects("c@example.com") is False  # no step sends on WhatsApp


def test_the_phone_paid_at_checkout_lands_on_the_customer_in_e164(client, emulator, deliver, whatsapp):
    attempt, _ = start_checkout(client)
    result = emulator.pay_checkout(attempt.stripe_session_id, card="4242424242424242", phone="+55 (11) 98888-7777")
    assert result["ok"], result
    deliver(emulator.events)
    customer = Customer.objects.get(email="ada@example.com")
    assert customer.phone == "+5511988887777" and customer.phone_invalid == ""
    event = AuditEvent.objects.filter(action="customer.phone_changed").first()
    assert event.data["new"] == "+5511988887777" and event.actor_type == "stripe"


def test_an_invalid_phone_from_stripe_is_recorded_and_shown_never_a_failed_event(client, emulator, deliver, whatsapp,
                                                                                   manage_url):
    attempt, _ = start_checkout(client)
    assert emulator.pay_checkout(attempt.stripe_session_id, card="4242424242424242", phone="12345")["ok"]
    deliver(emulator.events)
    customer = Customer.objects.get(email="ada@example.com")
    assert (customer.phone, customer.phone_invalid) == ("", "12345")
    assert not WebhookEvent.objects.exclude(status__in=[WebhookEvent.Status.PROCESSED, WebhookEvent.Status.IGNORED]).exists()
    assert AuditEvent.objects.get(action="customer.phone_invalid").data["raw"] == "12345"
    assert "is not a valid mobile number" in client.get(manage_url(customer)).content.decode()


def test_customer_updated_maps_the_phone_and_keeps_a_valid_one_over_an_invalid_one(client, emulator, deliver):
    stripe_customer = stripe_api().v1.customers.create(params={"email": "c@example.com"})
    customer = CustomerFactory(email="c@example.com", stripe_customer_id=stripe_customer["id"])
    mark = len(emulator.events)
    stripe_api().v1.customers.update(stripe_customer["id"], params={"phone": "+44 20 7946 0958"})
    emulator.advance(seconds=10)
    stripe_api().v1.customers.update(stripe_customer["id"], params={"phone": "0000"})
    deliver([e for e in emulator.events[mark:] if e["type"] == "customer.updated"])
    customer.refresh_from_db()
    assert (customer.phone, customer.phone_invalid) == ("+442079460958", "0000")
    assert not WebhookEvent.objects.exclude(status__in=[WebhookEvent.Status.PROCESSED, WebhookEvent.Status.IGNORED]).exists()


def test_the_manage_page_sets_the_phone_with_consent(client, manage_url, whatsapp):
    customer = CustomerFactory(phone_invalid="12345")
    page = client.get(manage_url(customer)).content.decode()
    assert "WhatsApp reminders" in page and "Send me payment reminders" in page
    response = client.post(manage_url(customer, "phone"), {"phone": "+55 11 99999-9999", "consent": "on"})
    assert response.status_code == 303
    customer.refresh_from_db()
    assert customer.phone == "+5511999999999" and customer.phone_invalid == "" and customer.phone_consent_at
    event = AuditEvent.objects.get(action="customer.phone_changed")
    assert (event.actor_type, event.data["old"], event.data["new"], event.data["old_invalid"]) == \
        ("customer", "", "+5511999999999", "12345")
    # Removing it.
    assert client.post(manage_url(customer, "phone"), {"phone": ""}).status_code == 303
    customer.refresh_from_db()
    assert customer.phone == "" and customer.phone_consent_at is None


@pytest.mark.parametrize("form, message", [
    ({"phone": "99999", "consent": "on"}, "country code"),
    ({"phone": "+55 11 99999-9999"}, "Tick the box"),
    ({"phone": "+" + "1" * 100, "consent": "on"}, "at most 64"),
])
def test_the_manage_page_refuses_bad_input(client, manage_url, whatsapp, form, message):
    customer = CustomerFactory(phone="+14155550100")
    response = client.post(manage_url(customer, "phone"), form)
    assert response.status_code == 400 and message in response.content.decode()
    customer.refresh_from_db()
    assert customer.phone == "+14155550100"
    assert not AuditEvent.objects.filter(action="customer.phone_changed").exists()


def test_support_edits_the_phone_in_the_admin_audited_with_old_and_new(admin_client, settings):
    settings.PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]
    customer = CustomerFactory(phone="+14155550100")
    url = reverse("admin:billing_console_customer_phone", args=[customer.pk])
    assert admin_client.get(url).status_code == 200
    bad = admin_client.post(url, {"phone": "nope", "reason": "customer called"})
    assert bad.status_code == 400 and "country code" in bad.content.decode()
    assert admin_client.post(url, {"phone": "+44 20 7946 0958", "reason": "customer called"}).status_code == 302
    customer.refresh_from_db()
    assert customer.phone == "+442079460958" and customer.phone_consent_at is None
    event = AuditEvent.objects.get(action="customer.phone_changed")
    assert (event.actor_type, event.data["old"], event.data["new"], event.data["reason"]) == \
        ("admin", "+14155550100", "+442079460958", "customer called")
    # The change form no longer edits the phone directly.
    change = admin_client.get(reverse("admin:billing_console_customer_change", args=[customer.pk])).content.decode()
    assert 'name="phone"' not in change and "Change phone" in change


def test_the_service_refuses_a_non_string():
    customer = CustomerFactory()
    with pytest.raises(ServiceError):
        customer_change_phone(customer=customer, phone=["+5511999999999"], actor_type="admin", actor="sam")
