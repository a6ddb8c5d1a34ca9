"""Support's screens: the customer page on one screen, its actions, the inbox and checkout lists, and
query counts that do not grow with the number of rows."""

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext

from billing_console.manage_links import ManageLinkInvalid, manage_link_read, manage_link_token
from billing_console.models import AuditEvent, CheckoutAttempt, Customer, WebhookEvent
from billing_console.stripe.inbox import webhook_event_store
from tests.stripe_events import stripe_event
from tests.stripe.factories import CheckoutAttemptFactory, WebhookEventFactory
from tests.core.factories import CustomerFactory, SubscribedCustomerFactory
from billing_console.stripe.gateway import client as stripe_api

pytestmark = pytest.mark.django_db


def queries(client, url) -> int:
    with CaptureQueriesContext(connection) as ctx:
        response = client.get(url)
    assert response.status_code == 200, url
    return len(ctx.captured_queries)


@pytest.mark.parametrize("url, make", [
    ("/admin/billing_console/customer/", lambda i: SubscribedCustomerFactory()),
    ("/admin/billing_console/checkoutattempt/", lambda i: CheckoutAttemptFactory(customer=CustomerFactory())),
    ("/admin/billing_console/webhookevent/", lambda i: WebhookEventFactory()),
])
def test_changelist_query_count_does_not_grow_with_rows(admin_client, url, make):
    make(0)
    one = queries(admin_client, url)
    for i in range(49):
        make(i + 1)
    assert queries(admin_client, url) <= one


def test_customer_page_query_count_does_not_grow_with_attempts_and_events(admin_client, stripe_settings):
    customer = SubscribedCustomerFactory(stripe_customer_id="cus_page")
    CheckoutAttemptFactory(customer=customer, stripe_session_id="cs_page_0")
    url = f"/admin/billing_console/customer/{customer.pk}/change/"
    one = queries(admin_client, url)
    for i in range(1, 50):
        CheckoutAttemptFactory(customer=customer, stripe_session_id=f"cs_page_{i}")
        WebhookEventFactory(object_id=customer.subscription_id)
    assert queries(admin_client, url) <= one


def test_customer_page_shows_entitlement_attempts_events_and_audit(admin_client, stripe_settings):
    customer = SubscribedCustomerFactory(stripe_customer_id="cus_show", email="show@example.com")
    CheckoutAttemptFactory(customer=customer, status="paid", stripe_session_id="cs_show_1")
    WebhookEventFactory(stripe_id="evt_show_failed", object_id=customer.subscription_id,
                        type="customer.subscription.updated", status="failed", last_error="RuntimeError: boom")
    AuditEvent.objects.create(actor_type="admin", actor="support", action="customer.note", target_type="x",
                              target_id="1", customer=customer)
    page = admin_client.get(f"/admin/billing_console/customer/{customer.pk}/change/").content.decode()
    assert "Yes - subscription active, paid until" in page and "VALID" not in page
    assert "cs_show_1" in page
    assert "evt_show_failed" in page and "RuntimeError: boom" in page
    assert "customer.note" in page
    assert "Resync from Stripe" in page and "Revoke manage links" in page
    assert customer.manage_salt not in page


def test_resync_button_applies_stripe_state(admin_client, emulator, client, deliver):
    from tests.stripe.test_checkout_flow import start_checkout

    attempt, _ = start_checkout(client, email="rs@example.com")
    assert emulator.pay_checkout(attempt.stripe_session_id)["ok"]
    deliver(emulator.events)
    customer = Customer.objects.get(email="rs@example.com")
    stripe_api().v1.subscriptions.cancel(customer.subscription_id)  # its events are lost
    response = admin_client.post(f"/admin/billing_console/customer/{customer.pk}/resync/", follow=True)
    assert "1 customer resynced from Stripe." in response.content.decode()
    customer.refresh_from_db()
    assert customer.subscription_status == "canceled"
    assert AuditEvent.objects.filter(action="customer.resynced", actor_type="admin").exists()


def test_resync_when_stripe_is_down_reports_a_clear_error(admin_client, emulator):
    customer = SubscribedCustomerFactory(stripe_customer_id="cus_down")
    emulator.set_faults(api_500=10)
    response = admin_client.post("/admin/billing_console/customer/",
                                 {"action": "resync_from_stripe", "_selected_action": [customer.pk]}, follow=True)
    page = response.content.decode()
    assert "not resynced" in page and "try again later" in page
    assert "sk_test" not in page


def test_revoke_manage_links_invalidates_earlier_links(admin_client, stripe_settings):
    customer = CustomerFactory()
    token = manage_link_token(customer)
    assert manage_link_read(token) == customer
    admin_client.post(f"/admin/billing_console/customer/{customer.pk}/revoke-links/")
    with pytest.raises(ManageLinkInvalid):
        manage_link_read(token)
    assert AuditEvent.objects.filter(action="customer.manage_links_revoked", actor="admin").exists()


def test_resync_url_refuses_get(admin_client):
    customer = CustomerFactory()
    assert admin_client.get(f"/admin/billing_console/customer/{customer.pk}/resync/").status_code == 403


def test_webhook_event_page_shows_payload_without_secrets(admin_client, stripe_settings):
    event = stripe_event("checkout.session.completed", {
        "id": "cs_1", "client_secret": "cs_1_secret_abcdef",
        "metadata": {"note": f"key {stripe_settings.STRIPE_SECRET_KEY}"}}, event_id="evt_secret_page")
    row, _ = webhook_event_store(event=event, enqueue=False)
    page = admin_client.get(f"/admin/billing_console/webhookevent/{row.pk}/change/").content.decode()
    assert "cs_1" in page and "checkout.session.completed" in page
    assert "cs_1_secret_abcdef" not in page and stripe_settings.STRIPE_SECRET_KEY not in page


def test_replay_action_processes_failed_events(admin_client, stripe_settings):
    row = WebhookEventFactory(status="failed", last_error="x", type="customer.updated")
    unknown = WebhookEventFactory(status="failed", last_error="x", type="product.created")
    response = admin_client.post("/admin/billing_console/webhookevent/",
                                 {"action": "replay", "_selected_action": [row.pk, unknown.pk]}, follow=True)
    assert "1 event processed, 1 ignored (no receiver)" in response.content.decode()
    row.refresh_from_db()
    unknown.refresh_from_db()
    assert row.status == WebhookEvent.Status.PROCESSED and unknown.status == WebhookEvent.Status.IGNORED
    assert AuditEvent.objects.filter(action="webhook_event.replayed").exists()


def test_checkout_attempts_filter_by_status_and_hide_the_recovery_email(admin_client, stripe_settings):
    CheckoutAttemptFactory(status="abandoned", email="hidden@example.com", email_hint="h***@example.com")
    CheckoutAttemptFactory(status="paid")
    page = admin_client.get("/admin/billing_console/checkoutattempt/?status__exact=abandoned").content.decode()
    assert "h***@example.com" in page and "hidden@example.com" not in page
    assert page.count('class="field-status"') == 1 or "abandoned" in page.lower()
    attempt = CheckoutAttempt.objects.get(status="abandoned")
    detail = admin_client.get(f"/admin/billing_console/checkoutattempt/{attempt.pk}/change/").content.decode()
    assert "hidden@example.com" not in detail and attempt.recovery_email_encrypted not in detail
