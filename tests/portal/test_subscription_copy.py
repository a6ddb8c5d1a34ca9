"""Every subscription state, as the manage page and the manage-link email say it (one function decides:
billing_console.wording.subscription.subscription_copy). Each test reads the rendered words."""
from datetime import datetime, timedelta, timezone as dt_timezone

import pytest
from django.core import mail
from django.utils import timezone

from billing_console.models import Customer, Invoice
from billing_console.stripe.tasks import customer_manage_link_send
from billing_console.wording.subscription import State, day, subscription_copy
from deployments.models import BundleRelease, Deployment
from deployments.services import deployments_sync_pauses
from tests.core.factories import SubscribedCustomerFactory
from tests.deployments.factories import DeploymentFactory
from tests.licensing.factories import LicenseFactory

pytestmark = pytest.mark.django_db
A = Customer.AccessState


def _ts(dt: datetime) -> int:
    return int(dt.timestamp())


def invoice(customer, *, status, total=900, paid=None, start=None, end=None, url="https://invoice.stripe.test/i/x",
            stripe_id=None):
    """A console invoice as the receivers store it: the Stripe payload in data, its lines carry the period."""
    end = end or customer.current_period_end
    start = start or end - timedelta(days=30)
    paid = (total if status == "paid" else 0) if paid is None else paid
    stripe_id = stripe_id or f"in_{status}_{_ts(start)}"
    data = {"id": stripe_id, "object": "invoice", "status": status, "amount_due": total, "amount_paid": paid,
            "amount_remaining": total - paid if status == "open" else 0, "period_start": _ts(start), "period_end": _ts(start),
            "lines": {"data": [{"amount": total, "currency": "usd", "description": "Pro plan",
                                "period": {"start": _ts(start), "end": _ts(end)}}]}}
    return Invoice.objects.create(stripe_id=stripe_id, customer=customer, stripe_customer_id="cus_1",
                                  subscription_id=customer.subscription_id, currency="usd", total=total, subtotal=total,
                                  amount_due=total, amount_paid=paid, status=status, hosted_invoice_url=url,
                                  stripe_created=start, data=data)


def page(client, manage_url, customer) -> str:
    response = client.get(manage_url(customer))
    assert response.status_code == 200
    return response.content.decode().replace("&#x27;", "'")


def manage_email(customer) -> str:
    mail.outbox.clear()
    customer_manage_link_send(customer_id=customer.pk, reason="recover")
    (message,) = mail.outbox
    return message.body


def test_trialing_says_when_the_trial_ends_and_what_happens_then(client, manage_url):
    customer = SubscribedCustomerFactory(subscription_status="trialing",
                                         current_period_end=timezone.now() + timedelta(days=10))
    invoice(customer, status="paid", total=0, start=timezone.now() - timedelta(days=4))
    body, email = page(client, manage_url, customer), manage_email(customer)
    for text in (body, email):
        assert f"Trial ends on {day(customer.current_period_end)}" in text
        assert "Then Pro renews with the card on file." in text and "you pay nothing" in text
        assert "Next payment" not in text and "Subscription ended" not in text


def test_active_says_the_next_payment_amount_and_date(client, manage_url):
    customer = SubscribedCustomerFactory()
    invoice(customer, status="paid")
    body, email = page(client, manage_url, customer), manage_email(customer)
    for text in (body, email):
        assert "Pro is active" in text and "Next payment" in text
        assert f"$9.00 on {day(customer.current_period_end)}" in text
    assert "9.00 USD" not in body  # one money format: the manage page used to print "9.00 USD"


def test_cancel_at_period_end_says_ends_on_and_never_next_payment(client, manage_url):
    customer = SubscribedCustomerFactory(cancel_at_period_end=True)
    invoice(customer, status="paid")
    LicenseFactory(customer=customer)
    body, email = page(client, manage_url, customer), manage_email(customer)
    for text in (body, email):
        assert f"Pro ends on {day(customer.current_period_end)}" in text and "Ends on" in text
        assert "No further payment will be taken." in text
        assert "Next payment" not in text and "Renews on" not in text
    assert "Active until the subscription ends" in body


def test_past_due_shows_what_is_owed_and_the_pay_link_not_next_payment(client, manage_url):
    """December is unpaid: the page says what is owed for December and how to pay it, never "Next payment"."""
    customer = SubscribedCustomerFactory(subscription_status="past_due", access_state=A.GRACE)
    november_end = customer.current_period_end - timedelta(days=30)
    invoice(customer, status="paid", start=november_end - timedelta(days=30), end=november_end)
    invoice(customer, status="open", start=november_end, end=customer.current_period_end,
            url="https://invoice.stripe.test/i/december")
    body, email = page(client, manage_url, customer), manage_email(customer)
    for text in (body, email):
        assert "Payment failed" in text and "Amount due now" in text
        assert (f"The payment of $9.00 for {day(november_end)} to {day(customer.current_period_end)} "
                "did not go through.") in text
        assert "Next payment" not in text and "Renews on" not in text
    assert 'href="https://invoice.stripe.test/i/december"' in body and "Pay $9.00 now" in body
    assert "Pay $9.00 now: https://invoice.stripe.test/i/december" in email


def test_soft_locked_past_due_says_access_is_limited(client, manage_url):
    customer = SubscribedCustomerFactory(subscription_status="past_due", access_state=A.SOFT_LOCKED)
    invoice(customer, status="open")
    body = page(client, manage_url, customer)
    assert "Payment overdue: access is limited" in body and "Amount due now" in body and "Next payment" not in body


def test_hard_locked_says_locked_what_is_owed_and_how_to_pay(client, manage_url):
    customer = SubscribedCustomerFactory(subscription_status="past_due", access_state=A.HARD_LOCKED)
    invoice(customer, status="open")
    LicenseFactory(customer=customer)
    body, email = page(client, manage_url, customer), manage_email(customer)
    for text in (body, email):
        assert "Locked for non-payment" in text and "$9.00 is overdue." in text and "Next payment" not in text
    assert "Suspended (payment overdue)" in body and "Pay $9.00 now" in body


def test_unpaid_says_stripe_stopped_retrying_and_what_is_owed(client, manage_url):
    customer = SubscribedCustomerFactory(subscription_status="unpaid")
    invoice(customer, status="open")
    body, email = page(client, manage_url, customer), manage_email(customer)
    for text in (body, email):
        assert "Subscription unpaid" in text and "$9.00 is still owed" in text and "Next payment" not in text


def test_paused_subscription_says_it_is_paused_and_how_to_resume(client, manage_url):
    customer = SubscribedCustomerFactory(subscription_status="paused")
    body, email = page(client, manage_url, customer), manage_email(customer)
    for text in (body, email):
        assert "Pro is paused" in text and "Add a card in the billing portal to resume it." in text
        assert "Next payment" not in text


def test_incomplete_says_the_first_payment_is_missing(client, manage_url):
    customer = SubscribedCustomerFactory(subscription_status="incomplete")
    invoice(customer, status="open")
    body, email = page(client, manage_url, customer), manage_email(customer)
    for text in (body, email):
        assert "First payment not completed" in text and "$9.00 is due to start your Pro subscription." in text
        assert "Next payment" not in text


def test_expired_says_when_access_ran_out(client, manage_url):
    customer = SubscribedCustomerFactory(current_period_end=timezone.now() - timedelta(days=40))
    body = page(client, manage_url, customer)
    assert "Access expired" in body and "Next payment" not in body


def test_no_subscription_points_to_the_pricing_page(client, manage_url):
    from tests.core.factories import CustomerFactory

    customer = CustomerFactory()
    body, email = page(client, manage_url, customer), manage_email(customer)
    assert "No subscription yet" in body and "Choose a plan" in body and "No subscription yet" in email


@pytest.fixture
def live_release(bundles):
    return BundleRelease.objects.create(version="v1.0.0", bundle_url="http://bundles.invalid/v1.0.0.js", sha256="0" * 64,
                                        size=1, last_seen_at=timezone.now())


def test_canceled_customer_sees_ended_everywhere_and_no_button_that_would_refuse(client, manage_url, live_release):
    """The whole contradiction: "Subscription ended" beside "Next payment", a licence "Active", a green "Live"
    deployment and a "Resume updates" button that then refuses."""
    ended = timezone.now() - timedelta(days=3)
    customer = SubscribedCustomerFactory(subscription_status="canceled", access_state=A.CANCELED,
                                         access_state_changed_at=ended, current_period_end=ended)
    invoice(customer, status="paid", end=ended)
    LicenseFactory(customer=customer)  # still "active" in its own table
    deployment = DeploymentFactory(customer=customer, current_version="v1.0.0", last_push_at=ended)
    assert deployments_sync_pauses(customer=customer)["auto_paused"] == 1
    deployment.refresh_from_db()
    assert deployment.paused and deployment.paused_by == Deployment.PausedBy.AUTO_LOCK

    body, email = page(client, manage_url, customer), manage_email(customer)
    for text in (body, email):
        assert f"Subscription ended on {day(ended)}" in text
        assert "To come back, choose a plan on the pricing page" in text
        assert "Next payment" not in text and "Renews on" not in text
    assert '<span class="pill pill-ended">Ended</span>' in body and ">Active<" not in body
    assert "readiness-live" not in body and ">Live<" not in body and "✓" not in body
    assert f"Updates stopped: the subscription ended on {day(ended)}." in body
    assert "Resume updates" not in body and "deployment-resume" not in body and "/resume" not in body

    # The button is gone because the service would refuse: the same rule, asked directly.
    response = client.post(manage_url(customer, f"deployments/{deployment.pk}/resume"), follow=True)
    assert "subscription ended" in response.content.decode()
    deployment.refresh_from_db()
    assert deployment.paused


def test_a_pause_the_customer_may_lift_keeps_its_resume_button(client, manage_url):
    deployment = DeploymentFactory()
    client.post(manage_url(deployment.customer, f"deployments/{deployment.pk}/pause"))
    body = page(client, manage_url, deployment.customer)
    assert "Resume updates" in body
    client.post(manage_url(deployment.customer, f"deployments/{deployment.pk}/resume"))
    deployment.refresh_from_db()
    assert not deployment.paused


def test_a_token_stop_offers_no_resume_and_says_a_new_token_resumes(client, manage_url):
    deployment = DeploymentFactory(paused=True, paused_by=Deployment.PausedBy.AUTH_FAILURES, status="errored",
                                   last_error_code="token_invalid", last_error_message="Invalid API Token")
    body = page(client, manage_url, deployment.customer)
    assert "Resume updates" not in body and "Paste a fresh token below and updates start again." in body


def test_licence_revoked_by_support_says_revoked_whatever_the_subscription(client, manage_url):
    lic = LicenseFactory(status="revoked")
    assert '<span class="pill pill-ended">Revoked</span>' in page(client, manage_url, lic.customer)


def test_admin_paid_until_is_the_end_of_the_last_paid_period_not_the_unpaid_one(admin_client):
    customer = SubscribedCustomerFactory(subscription_status="past_due", access_state=A.GRACE)
    november_end = customer.current_period_end - timedelta(days=30)
    invoice(customer, status="paid", start=november_end - timedelta(days=30), end=november_end)
    invoice(customer, status="open", start=november_end, end=customer.current_period_end)
    body = admin_client.get(f"/admin/billing_console/customer/{customer.pk}/change/").content.decode()
    paid_until = november_end.astimezone(dt_timezone.utc).strftime("%Y-%m-%d %H:%M")
    unpaid_end = customer.current_period_end.astimezone(dt_timezone.utc).strftime("%Y-%m-%d %H:%M")
    assert f"<dt>Paid until</dt><dd>{paid_until} UTC</dd>" in body
    assert f"<dt>Paid until</dt><dd>{unpaid_end} UTC</dd>" not in body
    assert "Payment failed" in body and "Amount due now" in body and "Next payment" not in body


def test_admin_paid_until_says_so_when_nothing_was_ever_paid(admin_client):
    customer = SubscribedCustomerFactory(subscription_status="incomplete")
    invoice(customer, status="open")
    body = admin_client.get(f"/admin/billing_console/customer/{customer.pk}/change/").content.decode()
    assert "<dt>Paid until</dt><dd>no paid period</dd>" in body


def test_admin_licence_shows_ended_for_a_canceled_subscription(admin_client):
    customer = SubscribedCustomerFactory(subscription_status="canceled", access_state=A.CANCELED)
    lic = LicenseFactory(customer=customer)
    page_ = admin_client.get(f"/admin/billing_console/customer/{customer.pk}/change/").content.decode()
    listing = admin_client.get("/admin/licensing/license/").content.decode()
    detail = admin_client.get(f"/admin/licensing/license/{lic.pk}/change/").content.decode()
    for text in (page_, listing):
        assert ">Ended<" in text.replace('<td class="field-shown_status">', ">").replace("<p>", ">").replace("</p>", "<")
    assert "Customer sees" in detail and "Ended" in detail


@pytest.mark.parametrize("fields, state", [
    ({"subscription_status": "trialing"}, State.TRIALING),
    ({}, State.ACTIVE),
    ({"cancel_at_period_end": True}, State.ENDING),
    ({"subscription_status": "past_due"}, State.PAST_DUE),
    ({"subscription_status": "past_due", "access_state": A.SOFT_LOCKED}, State.PAST_DUE),
    ({"subscription_status": "past_due", "access_state": A.HARD_LOCKED}, State.LOCKED),
    ({"subscription_status": "unpaid"}, State.UNPAID),
    ({"subscription_status": "paused"}, State.PAUSED),
    ({"subscription_status": "incomplete"}, State.INCOMPLETE),
    ({"subscription_status": "incomplete_expired"}, State.ENDED),
    ({"subscription_status": "canceled"}, State.ENDED),
    ({"access_state": A.CANCELED}, State.ENDED),
    ({"subscription_id": ""}, State.NONE),
])
def test_every_state_has_its_words_and_only_active_promises_a_next_payment(fields, state):
    copy = subscription_copy(SubscribedCustomerFactory(**fields), invoices=[])
    assert copy.state == state and copy.headline
    labels = [label for label, _ in copy.facts]
    assert ("Next payment" in labels) == (state == State.ACTIVE)


def test_trial_names_the_price_it_renews_at_from_the_mirrored_price(client, manage_url):
    from djstripe.models import Price, Product

    product = Product.objects.create(id="prod_pro_test", name="Pro")
    Price.objects.create(id="price_trial_test", product=product, currency="usd", active=True,
                         stripe_data={"id": "price_trial_test", "object": "price", "unit_amount": 900, "currency": "usd",
                                      "recurring": {"interval": "month", "interval_count": 1}})
    customer = SubscribedCustomerFactory(subscription_status="trialing", price_id="price_trial_test",
                                         current_period_end=timezone.now() + timedelta(days=10))
    assert "Then Pro renews at $9.00 with the card on file." in page(client, manage_url, customer)


def test_past_due_beyond_the_offline_grace_still_names_the_debt_and_says_access_stopped(client, manage_url):
    customer = SubscribedCustomerFactory(subscription_status="past_due", access_state=A.GRACE,
                                         current_period_end=timezone.now() - timedelta(days=40))
    invoice(customer, status="open")
    LicenseFactory(customer=customer)
    body = page(client, manage_url, customer)
    assert "The payment of $9.00" in body and "Access is stopped until it is paid." in body
    assert "Everything keeps working" not in body and "Access expired" not in body
    assert '<span class="pill pill-suspended">Suspended</span>' in body  # the licence agrees with the entitlement


def test_a_canceled_while_locked_deployment_says_the_subscription_ended(client, manage_url):
    customer = SubscribedCustomerFactory(subscription_status="canceled", access_state=A.HARD_LOCKED)
    deployment = DeploymentFactory(customer=customer)
    deployments_sync_pauses(customer=customer)
    deployment.refresh_from_db()
    body = page(client, manage_url, customer)
    assert deployment.paused and "Updates stopped: the subscription ended" in body
    assert "an invoice is overdue" not in body and "Resume updates" not in body


def test_invoice_list_says_refunded_for_a_refunded_invoice(client, manage_url):
    customer = SubscribedCustomerFactory()
    refunded = invoice(customer, status="paid")
    refunded.data["post_payment_credit_notes_amount"] = 900
    refunded.save()
    assert '<span class="pill pill-paid">Refunded</span>' in page(client, manage_url, customer)


def test_support_pause_is_not_offered_to_the_customer_where_the_origins_are_separate(monkeypatch):
    from deployments import selectors as deployment_selectors

    monkeypatch.setattr(deployment_selectors, "CUSTOMER_ORIGIN", "customer")
    deployment = DeploymentFactory(paused=True, paused_by=Deployment.PausedBy.MANUAL)
    assert deployment_selectors.deployment_resume_block(deployment, by="customer") == "support"
    assert deployment_selectors.deployment_resume_block(deployment, by=Deployment.PausedBy.MANUAL) == ""
