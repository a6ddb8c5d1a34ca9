"""Every subscription state Stripe can send, through the real webhook view (signed), the inbox and the
receivers: subscriptions from outside Checkout, trials, pauses, plan changes, discounts, refunds,
disputes, 3-D Secure, void/uncollectible invoices, cancellation; and no event type ever fails."""
import subprocess
import time

import pytest
import stripe
from django.core import mail
from django.db import connection

from billing_console.models import (AuditEvent, CheckoutAttempt, Customer, Dispute, Invoice, UnlinkedSubscription,
                                    WebhookEvent)
from billing_console.selectors import Reason, customer_entitlement
from billing_console.stripe import gateway
from dunning.models import DunningCase, DunningStepLog
from licensing.models import License
from tests.stripe.conftest import API_KEY
from tests.stripe.factories import CheckoutAttemptFactory
from tests.stripe.stripe_events import ROOT, event, invoice, object_for_type, stripe_object, subscription
from tests.core.factories import SubscribedCustomerFactory
from tests.dunning.factories import DunningCaseFactory, DunningStepLogFactory
from tests.licensing.factories import DeviceActivationFactory, LicenseFactory

pytestmark = pytest.mark.django_db


@pytest.fixture
def customer(stripe_settings):
    return SubscribedCustomerFactory(stripe_customer_id="cus_life", subscription_id="sub_life",
                                     email="life@example.com")


def stripe_customer(emulator, **params) -> str:
    return stripe.Customer.create(api_key=API_KEY, **params)["id"]


def emails_to(address):
    return [m for m in mail.outbox if address in m.to]


APPLIED = {WebhookEvent.Status.PROCESSED, WebhookEvent.Status.IGNORED}


# --- 1. Subscriptions from anywhere ---------------------------------------------------------------
def test_api_subscription_for_a_new_email_makes_an_entitled_customer_with_licence_and_manage_link(emulator, send):
    cus = stripe_customer(emulator, email="Sales.Deal@example.com", name="Sales Deal")
    row = send(event("customer.subscription.created", subscription(id="sub_api_1", customer=cus)))

    assert row.status == WebhookEvent.Status.PROCESSED
    customer = Customer.objects.get(email="sales.deal@example.com")
    assert (customer.stripe_customer_id, customer.subscription_id, customer.subscription_status, customer.plan) == (
        cus, "sub_api_1", "active", "pro")
    assert customer.name == "Sales Deal"
    assert customer_entitlement(customer).entitled
    assert License.objects.filter(customer=customer, subscription_id="sub_api_1").exists()
    subjects = [m.subject for m in emails_to("sales.deal@example.com")]
    assert any("account link" in s for s in subjects), subjects
    assert AuditEvent.objects.filter(customer=customer, action="customer.created").exists()


def test_api_subscription_links_the_existing_customer_by_email(emulator, send, stripe_settings):
    existing = SubscribedCustomerFactory(email="known@example.com", subscription_id="sub_old", subscription_status="canceled",
                                         access_state=Customer.AccessState.CANCELED)
    cus = stripe_customer(emulator, email="known@example.com")
    send(event("customer.subscription.created", subscription(id="sub_api_2", customer=cus)))
    existing.refresh_from_db()
    assert (existing.stripe_customer_id, existing.subscription_id, existing.access_state) == (cus, "sub_api_2", "active")
    assert Customer.objects.count() == 1


def test_the_stripe_customer_is_read_before_the_event_transaction(emulator, stripe_settings, monkeypatch):
    """The preparer runs outside the receivers' transaction (no row lock is held while Stripe answers)."""
    from billing_console.stripe.inbox import webhook_event_process, webhook_event_store

    cus = stripe_customer(emulator, email="outside@example.com")
    seen = []
    real = gateway.customer_retrieve

    def spy(customer_id):
        seen.append(connection.in_atomic_block and len(connection.savepoint_ids))
        return real(customer_id)

    monkeypatch.setattr(gateway, "customer_retrieve", spy)
    row, _ = webhook_event_store(event=event("customer.subscription.created", subscription(id="sub_out", customer=cus)),
                                 enqueue=False)
    # pytest-django wraps the test in one atomic block; the receivers' transaction would add a savepoint.
    depth_outside = len(connection.savepoint_ids)
    assert webhook_event_process(webhook_event_id=row.pk) == "processed"
    assert seen and all(depth in (False, depth_outside) for depth in seen)
    assert Customer.objects.filter(email="outside@example.com", subscription_id="sub_out").exists()


def test_stripe_unreachable_fails_the_event_for_a_retry_not_for_good(stripe_settings, monkeypatch):
    from billing_console.stripe.inbox import webhook_event_process, webhook_event_store

    def down(customer_id):
        raise gateway.StripeGatewayError("Stripe is unreachable", retryable=True)

    monkeypatch.setattr(gateway, "customer_retrieve", down)
    row, _ = webhook_event_store(event=event("customer.subscription.created",
                                             subscription(id="sub_down", customer="cus_down")), enqueue=False)
    assert webhook_event_process(webhook_event_id=row.pk) == "failed"
    row.refresh_from_db()
    assert row.next_attempt_at is not None and not Customer.objects.exists()


def test_a_subscription_whose_customer_has_no_email_is_listed_for_support_then_linked(
        emulator, send, admin_client, django_capture_on_commit_callbacks):
    cus = stripe_customer(emulator, name="No Email Ltd")
    row = send(event("customer.subscription.created", subscription(id="sub_noemail", customer=cus)))
    assert row.status == WebhookEvent.Status.PROCESSED and not Customer.objects.exists()
    unlinked = UnlinkedSubscription.objects.get(subscription_id="sub_noemail")
    assert (unlinked.stripe_customer_id, unlinked.status, unlinked.resolved_at) == (cus, "active", None)
    send(event("customer.subscription.updated", subscription(id="sub_noemail", customer=cus, status="past_due")))
    unlinked.refresh_from_db()
    assert unlinked.status == "past_due" and UnlinkedSubscription.objects.count() == 1

    page = admin_client.get("/admin/billing_console/unlinkedsubscription/").content.decode()
    assert "sub_noemail" in page
    form = admin_client.post("/admin/billing_console/unlinkedsubscription/",
                             {"action": "link_by_email", "_selected_action": [unlinked.pk]})
    assert "Customer email" in form.content.decode()
    bad = admin_client.post("/admin/billing_console/unlinkedsubscription/",
                            {"action": "link_by_email", "_selected_action": [unlinked.pk], "email": "not-an-email"})
    assert bad.status_code == 200 and not Customer.objects.exists()
    with django_capture_on_commit_callbacks(execute=True):
        done = admin_client.post("/admin/billing_console/unlinkedsubscription/",
                                 {"action": "link_by_email", "_selected_action": [unlinked.pk],
                                  "email": "ops@noemail.test"}, follow=True)
    assert "1 subscription linked to ops@noemail.test" in done.content.decode()
    customer = Customer.objects.get(email="ops@noemail.test")
    assert (customer.subscription_id, customer.subscription_status, customer.stripe_customer_id) == (
        "sub_noemail", "past_due", cus)
    unlinked.refresh_from_db()
    assert unlinked.resolved_at and unlinked.customer == customer and unlinked.resolved_by
    assert License.objects.filter(subscription_id="sub_noemail").exists()
    assert emails_to("ops@noemail.test")


def test_an_unlinked_subscription_links_itself_when_stripe_gets_the_email(emulator, send):
    cus = stripe_customer(emulator)
    send(event("customer.subscription.created", subscription(id="sub_later", customer=cus)))
    send(event("customer.updated", stripe_object("customer", id=cus, email="later@example.com", name="Later")))
    customer = Customer.objects.get(email="later@example.com")
    assert customer.subscription_id == "sub_later"
    assert UnlinkedSubscription.objects.get(subscription_id="sub_later").resolved_at is not None


def test_a_subscription_that_ended_before_the_console_knew_it_makes_no_customer(emulator, send):
    cus = stripe_customer(emulator, email="gone@example.com")
    row = send(event("customer.subscription.deleted", subscription(id="sub_gone", customer=cus, status="canceled")))
    assert row.status == WebhookEvent.Status.PROCESSED and not Customer.objects.exists() and not mail.outbox


# --- 2. States ------------------------------------------------------------------------------------
def test_trialing_is_entitled_until_the_trial_ends_and_trial_will_end_emails_the_manage_link(customer, send):
    trial_end = int(time.time()) + 3 * 86400
    send(event("customer.subscription.updated", subscription(id="sub_life", customer="cus_life", status="trialing",
                                                             trial_end=trial_end, period_end=trial_end)))
    customer.refresh_from_db()
    ent = customer_entitlement(customer)
    assert ent.entitled and ent.reason == Reason.VALID
    assert int(customer.trial_end.timestamp()) == trial_end
    send(event("customer.subscription.trial_will_end",
               subscription(id="sub_life", customer="cus_life", status="trialing", trial_end=trial_end)))
    [message] = [m for m in emails_to("life@example.com") if "trial" in m.subject.lower()]
    assert "trial ends soon" in message.subject.lower() and "/manage/" in message.body
    assert customer.trial_end.strftime("%-d %B %Y") in message.body


@pytest.mark.parametrize("entitled_setting", [False, True])
def test_paused_then_resumed_follows_the_setting(customer, send, stripe_settings, entitled_setting):
    stripe_settings.PAUSED_SUBSCRIPTION_ENTITLED = entitled_setting
    send(event("customer.subscription.paused", subscription(id="sub_life", customer="cus_life", status="paused"),
               created=int(time.time()) - 10))
    customer.refresh_from_db()
    ent = customer_entitlement(customer)
    assert (ent.entitled, ent.reason) == (entitled_setting, Reason.PAUSED)
    send(event("customer.subscription.resumed", subscription(id="sub_life", customer="cus_life", status="active")))
    customer.refresh_from_db()
    assert customer_entitlement(customer).reason == Reason.VALID


def test_pause_collection_on_a_running_subscription_counts_as_paused(customer, send):
    send(event("customer.subscription.updated", subscription(
        id="sub_life", customer="cus_life", pause_collection={"behavior": "void", "resumes_at": None}),
        created=int(time.time()) - 10))
    customer.refresh_from_db()
    assert customer.collection_paused and customer_entitlement(customer).reason == Reason.PAUSED
    assert not customer_entitlement(customer).entitled
    send(event("customer.subscription.updated", subscription(id="sub_life", customer="cus_life")))
    customer.refresh_from_db()
    assert not customer.collection_paused and customer_entitlement(customer).entitled


@pytest.mark.parametrize("status, reason", [("unpaid", Reason.UNPAID), ("incomplete", Reason.INCOMPLETE),
                                            ("incomplete_expired", Reason.CANCELED)])
def test_unpaid_and_incomplete_are_not_entitled(customer, send, status, reason):
    send(event("customer.subscription.updated", subscription(id="sub_life", customer="cus_life", status=status)))
    customer.refresh_from_db()
    ent = customer_entitlement(customer)
    assert (ent.entitled, ent.reason) == (False, reason)


def test_incomplete_expired_abandons_the_checkout_attempt(stripe_settings, send):
    attempt = CheckoutAttemptFactory(email="late@example.com")
    first = subscription(id="sub_inc", customer="cus_inc", status="incomplete", metadata={"checkout_token": attempt.token})
    send(event("customer.subscription.created", first, created=int(time.time()) - 100))
    expired = subscription(id="sub_inc", customer="cus_inc", status="incomplete_expired",
                           metadata={"checkout_token": attempt.token})
    send(event("customer.subscription.updated", expired))
    attempt.refresh_from_db()
    assert attempt.status == CheckoutAttempt.Status.ABANDONED
    assert AuditEvent.objects.filter(action="checkout.abandoned", target_id=str(attempt.pk)).exists()


def test_upgrade_with_quantity_moves_plan_and_device_limit_at_once_and_a_downgrade_keeps_active_devices(
        customer, send):
    lic = LicenseFactory(customer=customer, subscription_id="sub_life", max_devices=3)
    devices = [DeviceActivationFactory(license=lic) for _ in range(3)]
    send(event("customer.subscription.updated", subscription(id="sub_life", customer="cus_life",
                                                             price="price_sandbox_team", quantity=2),
               created=int(time.time()) - 10))
    customer.refresh_from_db()
    lic.refresh_from_db()
    assert (customer.plan, customer.price_id, customer.quantity) == ("team", "price_sandbox_team", 2)
    assert lic.plan == "team" and lic.max_devices == 20

    send(event("customer.subscription.updated", subscription(id="sub_life", customer="cus_life", quantity=1)))
    lic.refresh_from_db()
    assert lic.plan == "pro" and lic.max_devices == 3
    for device in devices:
        device.refresh_from_db()
        assert device.is_active
    change = AuditEvent.objects.filter(action="license.plan_changed").latest("at")
    assert change.data["active_devices"] == 3


def test_discounts_are_kept_on_the_customer_and_the_invoice(customer, send):
    coupon = stripe_object("coupon", id="LAUNCH25", name="Launch", percent_off=25, amount_off=None,
                           duration="repeating")
    send(event("customer.discount.created", stripe_object("discount", customer="cus_life", subscription="sub_life",
                                                          source={"type": "coupon", "coupon": coupon})))
    customer.refresh_from_db()
    assert customer.discount["coupon"] == "LAUNCH25" and customer.discount["percent_off"] == 25
    inv = invoice(id="in_disc", customer="cus_life", subscription_id="sub_life", status="paid", amount=675,
                  total_discount_amounts=[{"amount": 225, "discount": "di_1"}])
    send(event("invoice.paid", inv))
    assert Invoice.objects.get(stripe_id="in_disc").discount == 225
    send(event("customer.discount.deleted", stripe_object("discount", customer="cus_life", subscription="sub_life")))
    customer.refresh_from_db()
    assert customer.discount == {}


def test_partial_then_full_refund_is_on_the_invoice_with_who_and_when(customer, send):
    send(event("invoice.paid", invoice(id="in_refund", customer="cus_life", subscription_id="sub_life", status="paid"),
               created=int(time.time()) - 100))
    charge = stripe_object("charge", id="ch_refund", customer="cus_life", amount=900, amount_refunded=400,
                           refunded=False, created=int(time.time()), invoice="in_refund")
    send(event("charge.refunded", charge, request_id="req_support_1"))
    inv = Invoice.objects.get(stripe_id="in_refund")
    assert inv.amount_refunded == 400 and inv.refunded_at is not None
    audit = AuditEvent.objects.get(action="invoice.refunded")
    assert audit.customer == customer and audit.data["by"] == "req_support_1" and audit.data["amount_refunded"] == 400
    send(event("charge.refunded", {**charge, "amount_refunded": 900, "refunded": True}))
    inv.refresh_from_db()
    assert inv.amount_refunded == 900


def test_a_refund_for_a_charge_the_current_api_does_not_link_finds_the_paid_invoice(customer, send):
    send(event("invoice.paid", invoice(id="in_nolink", customer="cus_life", subscription_id="sub_life", status="paid"),
               created=int(time.time()) - 100))
    charge = stripe_object("charge", id="ch_nolink", customer="cus_life", amount=900, amount_refunded=900,
                           created=int(time.time()))
    charge.pop("invoice", None)
    send(event("charge.refunded", charge))
    assert Invoice.objects.get(stripe_id="in_nolink").amount_refunded == 900


@pytest.mark.parametrize("locks", [False, True])
def test_dispute_alerts_support_flags_the_customer_and_records_the_outcome(customer, send, stripe_settings, locks,
                                                                         admin_client):
    stripe_settings.OPS_EMAIL = "ops@console.test"
    stripe_settings.DISPUTE_LOCKS_ACCESS = locks
    send(event("invoice.paid", invoice(id="in_disp", customer="cus_life", subscription_id="sub_life", status="paid"),
               created=int(time.time()) - 100))
    dispute = stripe_object("dispute", id="dp_life", amount=900, currency="usd", reason="fraudulent",
                            status="needs_response",
                            charge={**stripe_object("charge"), "id": "ch_disp", "customer": "cus_life",
                                    "invoice": "in_disp", "amount": 900})
    send(event("charge.dispute.created", dispute, created=int(time.time()) - 50))
    row = Dispute.objects.get(stripe_id="dp_life")
    customer.refresh_from_db()
    assert (row.customer, row.invoice_id, row.amount, row.outcome) == (customer, "in_disp", 900, "")
    assert customer.dispute_open
    [alert] = emails_to("ops@console.test")
    assert "dp_life" in alert.body and "life@example.com" in alert.body and "$9.00" in alert.body
    assert customer_entitlement(customer).entitled is (not locks)
    assert AuditEvent.objects.filter(action="customer.dispute_flag", customer=customer).exists()
    page = admin_client.get(f"/admin/billing_console/customer/{customer.pk}/change/").content.decode()
    assert "dp_life" in page and "fraudulent" in page and "open (needs_response)" in page

    send(event("charge.dispute.closed", {**dispute, "status": "lost"}))
    row.refresh_from_db()
    customer.refresh_from_db()
    assert row.outcome == Dispute.Outcome.LOST and row.closed_at and not customer.dispute_open
    assert AuditEvent.objects.filter(action="dispute.lost").exists()
    assert len(emails_to("ops@console.test")) == 1


def test_payment_action_required_emails_the_hosted_link_and_dunning_says_it_is_not_a_decline(customer, send,
                                                                                             admin_client):
    inv = invoice(id="in_3ds", customer="cus_life", subscription_id="sub_life", status="open")
    send(event("invoice.payment_action_required", inv))
    [message] = [m for m in emails_to("life@example.com") if "confirm" in m.subject.lower()]
    assert "https://invoice.stripe.test/in_3ds" in message.body and "not declined" in message.body
    case = DunningCase.objects.get(invoice_id="in_3ds")
    assert case.action_required_at is not None
    page = admin_client.get("/admin/dunning/dunningcase/").content.decode()
    assert "Action required (3-D Secure)" in page


def test_voided_invoice_closes_the_case_and_uncollectible_exhausts_it(customer, stripe_settings, send):
    voided = DunningCaseFactory(customer=customer, invoice_id="in_void", subscription_id="sub_life")
    queued = DunningStepLogFactory(case=voided, status=DunningStepLog.Status.QUEUED)
    send(event("invoice.voided", invoice(id="in_void", customer="cus_life", subscription_id="sub_life", status="void")))
    voided.refresh_from_db()
    queued.refresh_from_db()
    assert (voided.status, voided.close_reason) == (DunningCase.Status.CANCELED, "invoice_voided")
    assert queued.status == DunningStepLog.Status.SKIPPED

    bad = DunningCaseFactory(customer=customer, invoice_id="in_unc", subscription_id="sub_life")
    step = DunningStepLogFactory(case=bad, status=DunningStepLog.Status.QUEUED)
    send(event("invoice.marked_uncollectible", invoice(id="in_unc", customer="cus_life", subscription_id="sub_life",
                                                       status="uncollectible")))
    bad.refresh_from_db()
    step.refresh_from_db()
    assert bad.status == DunningCase.Status.EXHAUSTED and bad.next_step_at is None
    assert step.status == DunningStepLog.Status.SKIPPED


def test_ended_subscription_emails_how_to_come_back_once(customer, send):
    ended = subscription(id="sub_life", customer="cus_life", status="canceled", ended_at=int(time.time()))
    send(event("customer.subscription.updated", ended, created=int(time.time()) - 5))
    send(event("customer.subscription.deleted", ended))
    [message] = [m for m in emails_to("life@example.com") if "ended" in m.subject]
    assert "ended" in message.subject and "subscribe again" in message.body and "https://console.test/" in message.body
    customer.refresh_from_db()
    assert customer.access_state == Customer.AccessState.CANCELED


# --- Bad input and every type ---------------------------------------------------------------------
def sandbox_event_types() -> set[str]:
    """Every type the Stripe sandbox emits: read from its resources when this checkout has them, plus the
    list as the sandbox had it when this test was written (it grows; the union is tested)."""
    known = set(KNOWN_SANDBOX_TYPES)
    resources = ROOT / "sandbox" / "stripe" / "resources"
    if resources.is_dir():
        out = subprocess.run(["grep", "-rhoE", r'emit\("[a-z0-9_.]+"', str(resources)], capture_output=True, text=True)
        known |= {line[len('emit("'):-1] for line in out.stdout.split()}
    return known


KNOWN_SANDBOX_TYPES = """
billing.meter.created billing.meter.deactivated billing.meter.reactivated billing.meter.updated
billing_portal.configuration.created billing_portal.configuration.updated billing_portal.session.created
charge.captured charge.dispute.closed charge.dispute.created charge.dispute.funds_reinstated
charge.dispute.funds_withdrawn charge.dispute.updated charge.failed charge.refund.updated charge.refunded
charge.succeeded charge.updated checkout.session.completed checkout.session.expired coupon.created coupon.deleted
coupon.updated customer.created customer.deleted customer.discount.created customer.discount.deleted
customer.discount.updated customer.source.created customer.source.deleted customer.subscription.created
customer.subscription.deleted customer.subscription.paused customer.subscription.resumed
customer.subscription.trial_will_end customer.subscription.updated customer.updated invoice.created
invoice.deleted invoice.finalized invoice.marked_uncollectible invoice.paid invoice.payment_action_required
invoice.payment_failed invoice.payment_succeeded invoice.sent invoice.updated invoice.voided invoiceitem.created
invoiceitem.deleted payment_intent.amount_capturable_updated payment_intent.canceled payment_intent.created
payment_intent.payment_failed payment_intent.requires_action payment_intent.succeeded payment_intent.updated
payment_method.attached payment_method.detached payment_method.updated plan.created plan.deleted plan.updated
price.created price.deleted price.updated product.created product.deleted product.updated
promotion_code.created promotion_code.updated refund.created refund.failed refund.updated
setup_intent.canceled setup_intent.created setup_intent.requires_action setup_intent.setup_failed
setup_intent.succeeded setup_intent.updated subscription_schedule.canceled subscription_schedule.completed
subscription_schedule.created subscription_schedule.expiring subscription_schedule.released
subscription_schedule.updated tax_rate.created tax_rate.updated test_helpers.test_clock.advancing
test_helpers.test_clock.created test_helpers.test_clock.deleted test_helpers.test_clock.ready
""".split()


@pytest.mark.parametrize("event_type", sorted(sandbox_event_types()))
def test_every_type_the_sandbox_emits_is_processed_or_ignored_never_failed(customer, send, stripe_settings,
                                                                         monkeypatch, event_type):
    monkeypatch.setattr(gateway, "customer_retrieve", lambda cid: {"id": cid, "object": "customer", "email": ""})
    monkeypatch.setattr(gateway, "charge_retrieve", lambda cid: {"id": cid, "object": "charge", "customer": None})
    obj = object_for_type(event_type)
    row = send(event(event_type, obj))
    assert row.status in APPLIED, (row.status, row.last_error)


@pytest.mark.parametrize("event_type", sorted(sandbox_event_types()))
@pytest.mark.parametrize("obj", [{}, {"id": None}, {"object": "unexpected", "id": 5, "customer": {"id": None}}],
                         ids=["empty", "no-id", "wrong-shape"])
def test_an_event_missing_its_fields_is_handled_never_failed(customer, send, stripe_settings, monkeypatch, event_type,
                                                             obj):
    monkeypatch.setattr(gateway, "customer_retrieve", lambda cid: {"id": cid, "object": "customer", "email": ""})
    monkeypatch.setattr(gateway, "charge_retrieve", lambda cid: {"id": cid, "object": "charge", "customer": None})
    row = send(event(event_type, obj))
    assert row.status in APPLIED, (row.status, row.last_error)


@pytest.mark.parametrize("status, pause_entitled, headline", [
    ("unpaid", False, "Subscription unpaid"),
    ("paused", False, "Pro is paused"),
    ("paused", True, "Pro is paused"),
])
def test_the_new_states_have_their_own_words_on_the_manage_page_and_the_admin(customer, send, client, admin_client,
                                                                              stripe_settings, status, pause_entitled,
                                                                              headline):
    from billing_console.manage_links import manage_link_make

    stripe_settings.PAUSED_SUBSCRIPTION_ENTITLED = pause_entitled
    send(event("customer.subscription.updated", subscription(id="sub_life", customer="cus_life", status=status)))
    customer.refresh_from_db()
    page = client.get(manage_link_make(customer).replace(stripe_settings.SITE_URL, "")).content.decode()
    assert headline in page and "No subscription yet" not in page
    admin = admin_client.get(f"/admin/billing_console/customer/{customer.pk}/change/").content.decode()
    assert "No - there is no subscription" not in admin


def test_a_dispute_naming_its_charge_by_id_reads_the_charge_before_the_transaction(customer, send, stripe_settings,
                                                                                 monkeypatch):
    stripe_settings.OPS_EMAIL = "ops@console.test"
    send(event("invoice.paid", invoice(id="in_byid", customer="cus_life", subscription_id="sub_life", status="paid"),
               created=int(time.time()) - 100))
    reads = []

    def charge_retrieve(charge_id):
        reads.append(len(connection.savepoint_ids))
        return {**stripe_object("charge"), "id": charge_id, "customer": "cus_life", "amount": 900,
                "created": int(time.time())}

    monkeypatch.setattr(gateway, "charge_retrieve", charge_retrieve)
    send(event("charge.dispute.created", stripe_object("dispute", id="dp_byid", charge="ch_byid", amount=900)))
    row = Dispute.objects.get(stripe_id="dp_byid")
    assert reads == [0]  # outside the receivers' transaction (a savepoint inside the test's own)
    assert (row.customer, row.charge_id, row.invoice_id) == (customer, "ch_byid", "in_byid")
    customer.refresh_from_db()
    assert customer.dispute_open and emails_to("ops@console.test")
