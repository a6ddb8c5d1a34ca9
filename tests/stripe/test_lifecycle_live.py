"""Every lifecycle path driven through the Stripe sandbox's own API with the real stripe client: the
emulator runs in-process, each event it emits is delivered signed to /api/billing/webhook and processed
(the worker runs on commit), and each test reads what the console then holds, sends and shows."""
from datetime import datetime, timezone as dt_timezone

import pytest
import stripe
from django.conf import settings
from django.core import mail

from billing_console.manage_links import manage_link_make
from billing_console.models import Customer, WebhookEvent
from billing_console.selectors import Reason, customer_entitlement
from licensing.models import License
from tests.stripe.conftest import API_KEY

pytestmark = pytest.mark.django_db

APPLIED = {WebhookEvent.Status.PROCESSED, WebhookEvent.Status.IGNORED}


class Live:
    """The sandbox and the console side by side: `run(fn)` calls the sandbox and delivers what it emitted."""

    def __init__(self, emu, post_event, client):
        self.emu, self.post_event, self.client = emu, post_event, client
        self.delivered: list[str] = []

    def sync(self):
        """Deliver every event emitted since the last sync, in order, each answered 200."""
        for evt in self.emu.events[len(self.delivered):]:
            response = self.post_event(evt)
            assert response.status_code == 200, (evt["type"], response.content)
            self.delivered.append(evt["id"])

    def run(self, fn, *args, **kwargs):
        result = fn(*args, api_key=API_KEY, **kwargs)
        self.sync()
        return result

    def advance(self, **delta):
        self.emu.advance(**delta)
        self.sync()

    def types(self) -> list[str]:
        return [e["type"] for e in self.emu.events]

    def assert_all_applied(self):
        rows = {r.stripe_id: r for r in WebhookEvent.objects.filter(stripe_id__in=self.delivered)}
        assert len(rows) == len(set(self.delivered))
        bad = [(r.type, r.status, r.last_error) for r in rows.values() if r.status not in APPLIED]
        assert not bad, bad

    def customer(self, email) -> Customer:
        return Customer.objects.get(email=email)

    def manage_page(self, customer) -> str:
        response = self.client.get(manage_link_make(customer).replace(settings.SITE_URL, ""))
        assert response.status_code == 200
        return " ".join(response.content.decode().split())


@pytest.fixture
def live(emulator, post_event, client):
    mail.outbox.clear()
    return Live(emulator, post_event, client)


def emails_to(address):
    return [m for m in mail.outbox if address in m.to]


def invoice_emails(address):
    return [m for m in emails_to(address) if m.subject.startswith("Invoice ")]


def assert_paid_invoice_email(message, amount):
    """A paid invoice's email says it is paid and asks for nothing."""
    assert f"Amount paid: {amount}" in message.body and "Nothing more is due" in message.body, message.body
    assert "Amount due" not in message.body and "pay it online" not in message.body, message.body


def assert_trial_invoice_email(message, amount, trial_end):
    """A trial's $0 invoice says nothing is charged and when the first payment is, never "Amount paid: $0.00";
    its PDF (attached) says the same."""
    import io

    from pypdf import PdfReader

    from billing_console.wording.subscription import day

    (_, pdf, _), = message.attachments
    pdf_words = " ".join(" ".join(p.extract_text() for p in PdfReader(io.BytesIO(pdf)).pages).split())
    for shown in (message.body, pdf_words):
        assert "Trial started: nothing is charged today." in shown, shown
        assert f"The first payment of {amount} is on {day(trial_end)}, when the trial ends." in shown, shown
        assert "Amount paid" not in shown and "Amount due" not in shown and "pay it online" not in shown, shown
    assert "Total: $0.00" in message.body and "PAID" in pdf_words


def new_stripe_customer(live, email, card="pm_card_visa", **params):
    cus = live.run(stripe.Customer.create, email=email, name="Live Buyer", payment_method=card,
                   invoice_settings={"default_payment_method": card}, **params)
    return cus


def test_a_subscription_made_from_the_api_becomes_an_entitled_customer(live):
    cus = new_stripe_customer(live, "api@example.com")
    sub = live.run(stripe.Subscription.create, customer=cus.id, items=[{"price": "price_sandbox_pro"}])
    assert sub.status == "active"

    customer = live.customer("api@example.com")
    assert (customer.stripe_customer_id, customer.subscription_id, customer.subscription_status, customer.plan) == (
        cus.id, sub.id, "active", "pro")
    assert customer_entitlement(customer).reason == Reason.VALID
    assert License.objects.filter(customer=customer, subscription_id=sub.id).exists()
    assert any("account link" in m.subject for m in emails_to("api@example.com")), [m.subject for m in mail.outbox]
    assert any("licence key" in m.subject for m in emails_to("api@example.com"))
    [bill] = invoice_emails("api@example.com")
    assert_paid_invoice_email(bill, "$9.00")
    page = live.manage_page(customer)
    assert "Next payment" in page and "$9.00" in page, page
    live.assert_all_applied()


def subscribe(live, email, card="pm_card_visa", **params):
    cus = new_stripe_customer(live, email, card=card)
    sub = live.run(stripe.Subscription.create, customer=cus.id, items=[{"price": "price_sandbox_pro"}], **params)
    return cus, sub


def paid_charge(live, customer_id):
    [charge] = [c for c in stripe.Charge.list(customer=customer_id, api_key=API_KEY).data if c.status == "succeeded"]
    return charge


def test_trial_then_active(live):
    from django.core.management import call_command

    call_command("sync_catalog")  # the price the trial's invoice names, as on an installed console
    cus, sub = subscribe(live, "trial@example.com", trial_period_days=7)
    assert sub.status == "trialing"
    customer = live.customer("trial@example.com")
    assert customer.subscription_status == "trialing" and int(customer.trial_end.timestamp()) == sub.trial_end
    assert customer_entitlement(customer).entitled
    page = live.manage_page(customer)
    assert "Trial ends on" in page and "Next payment" not in page, page

    live.advance(days=5)  # trial_will_end three days before the end
    assert "customer.subscription.trial_will_end" in live.types()
    [reminder] = [m for m in emails_to("trial@example.com") if "trial" in m.subject.lower()]
    assert "/manage/" in reminder.body

    live.advance(days=3)
    customer.refresh_from_db()
    assert customer.subscription_status == "active"
    assert customer_entitlement(customer).reason == Reason.VALID
    page = live.manage_page(customer)
    assert "Pro is active" in page and "Next payment" in page and "$9.00" in page and "Trial ends" not in page, page
    trial_bill, first_bill = invoice_emails("trial@example.com")
    assert_trial_invoice_email(trial_bill, "$9.00", datetime.fromtimestamp(sub.trial_end, tz=dt_timezone.utc))
    assert_paid_invoice_email(first_bill, "$9.00")
    live.assert_all_applied()


def test_upgrade_with_proration_moves_plan_and_devices_at_once(live):
    from billing_console.models import Invoice

    cus, sub = subscribe(live, "upgrade@example.com")
    live.advance(days=10)
    item = sub["items"]["data"][0]["id"]
    live.run(stripe.Subscription.modify, sub.id, items=[{"id": item, "price": "price_sandbox_team"}],
             proration_behavior="always_invoice")

    customer = live.customer("upgrade@example.com")
    assert (customer.plan, customer.price_id) == ("team", "price_sandbox_team")
    lic = License.objects.get(subscription_id=sub.id)
    assert lic.plan == "team" and lic.max_devices == settings.PLANS["team"]["max_devices"]
    proration = Invoice.objects.filter(subscription_id=sub.id).order_by("-stripe_created").first()
    # 20 of 30 days left: 2000 of the 2900-900 difference, give or take a cent for rounding per line.
    assert proration.status == "paid" and 1300 <= proration.total <= 1400, proration.total
    page = live.manage_page(customer)
    assert "Team is active" in page and "Next payment" in page, page
    _, bill = invoice_emails("upgrade@example.com")
    assert bill.subject == f"Invoice {proration.number} from Billing Console Sandbox"
    assert_paid_invoice_email(bill, f"${proration.total // 100}.{proration.total % 100:02d}")
    live.assert_all_applied()


def test_coupon_is_on_the_customer_the_invoice_and_the_manage_page(live):
    from billing_console.models import Invoice

    live.run(stripe.Coupon.create, id="LIVE25", percent_off=25, duration="forever", name="Live 25")
    cus, sub = subscribe(live, "coupon@example.com", discounts=[{"coupon": "LIVE25"}])
    customer = live.customer("coupon@example.com")
    first = Invoice.objects.get(subscription_id=sub.id)
    assert (first.subtotal, first.discount, first.total, first.status) == (900, 225, 675, "paid")
    page = live.manage_page(customer)
    assert "$6.75" in page, page
    [bill] = invoice_emails("coupon@example.com")
    assert "Subtotal: $9.00" in bill.body and "Discount: -$2.25" in bill.body and "Total: $6.75" in bill.body
    assert_paid_invoice_email(bill, "$6.75")
    live.assert_all_applied()


def test_the_manage_page_names_the_coupon(live):
    live.run(stripe.Coupon.create, id="LIVE25", percent_off=25, duration="forever", name="Live 25")
    cus, sub = subscribe(live, "named@example.com", discounts=[{"coupon": "LIVE25"}])
    # The discount event came before the console had the customer; the subscription event's preparer read
    # the discount's coupon (the pinned API names it by id only).
    assert live.types().index("customer.discount.created") < live.types().index("customer.subscription.created")
    customer = live.customer("named@example.com")
    assert customer.discount.get("coupon") == "LIVE25"
    page = live.manage_page(customer)
    assert "Live 25" in page and "25%" in page, page
    assert "<dt>Discount</dt><dd>Live 25: 25% off, forever</dd>" in page, page
    assert "<dt>Next payment</dt><dd>$6.75 on " in page, page  # the discounted renewal, not the $9.00 price

    live.run(stripe.Coupon.create, id="FIVE3", amount_off=500, currency="usd", duration="repeating",
             duration_in_months=3)
    live.run(stripe.Subscription.modify, sub.id, discounts=[{"coupon": "FIVE3"}])
    assert "customer.discount.updated" in live.types()
    customer.refresh_from_db()
    page = live.manage_page(customer)
    assert "<dt>Discount</dt><dd>$5.00 off for 3 months (until " in page, page
    assert "$6.75" not in page.split("Next payment", 1)[1][:60], page  # the last bill's discount no longer applies

    live.run(stripe.Subscription.delete_discount, sub.id)
    customer.refresh_from_db()
    assert customer.discount == {}
    page = live.manage_page(customer)
    assert "Discount" not in page and "Pro is active" in page, page
    live.assert_all_applied()


def test_partial_then_full_refund_is_on_the_invoice(live):
    from billing_console.models import AuditEvent, Invoice

    cus, sub = subscribe(live, "refund@example.com")
    charge = paid_charge(live, cus.id)
    sent = len(mail.outbox)
    live.run(stripe.Refund.create, charge=charge.id, amount=300)
    inv = Invoice.objects.get(subscription_id=sub.id)
    assert inv.amount_refunded == 300 and inv.refunded_at is not None
    live.run(stripe.Refund.create, charge=charge.id)
    inv.refresh_from_db()
    assert inv.amount_refunded == 900
    assert AuditEvent.objects.filter(action="invoice.refunded", customer__email="refund@example.com").count() == 2
    customer = live.customer("refund@example.com")
    assert len(mail.outbox) == sent  # a refund is support's act: the console sends no email of its own
    page = live.manage_page(customer)
    assert "Pro is active" in page and "Refunded" in page, page
    live.assert_all_applied()


def test_dispute_alerts_support_and_records_the_loss(live, stripe_settings):
    from billing_console.models import Dispute

    stripe_settings.OPS_EMAIL = "ops@console.test"
    cus, sub = subscribe(live, "dispute@example.com", card="pm_card_createDispute")
    assert "charge.dispute.created" in live.types()
    customer = live.customer("dispute@example.com")
    row = Dispute.objects.get(customer=customer)
    assert (row.amount, row.currency, row.outcome) == (900, "usd", "")
    assert customer.dispute_open and customer_entitlement(customer).entitled  # DISPUTE_LOCKS_ACCESS is off
    [alert] = emails_to("ops@console.test")
    assert row.stripe_id in alert.body and "dispute@example.com" in alert.body and "$9.00" in alert.body
    assert "Pro is active" in live.manage_page(customer)

    live.run(stripe.Dispute.close, row.stripe_id)
    row.refresh_from_db()
    customer.refresh_from_db()
    assert row.outcome == Dispute.Outcome.LOST and row.closed_at is not None and not customer.dispute_open
    live.assert_all_applied()


def test_a_dispute_locks_access_when_the_setting_says_so_and_winning_it_gives_access_back(live, stripe_settings):
    from billing_console.models import Dispute
    from billing_console.wording.subscription import day

    stripe_settings.DISPUTE_LOCKS_ACCESS = True
    stripe_settings.SUPPORT_EMAIL = "help@console.test"
    cus, sub = subscribe(live, "won@example.com")
    charge = paid_charge(live, cus.id)
    live.advance(days=3)
    live.emu.open_dispute(charge.id)  # the cardholder's bank, days later
    live.sync()
    customer = live.customer("won@example.com")
    row = Dispute.objects.get(customer=customer)
    assert row.invoice_id and customer_entitlement(customer).reason == Reason.DISPUTED
    page = live.manage_page(customer)
    paid_on = day(datetime.fromtimestamp(charge.created, tz=dt_timezone.utc))
    assert "Access paused: a payment is disputed" in page, page
    assert f"A payment of $9.00 on {paid_on} is disputed with your bank." in page, page
    assert "Access is paused until the dispute is resolved" in page and "help@console.test" in page, page
    assert "Paused (payment disputed)" in page and "Next payment" not in page and "overdue" not in page, page

    live.run(stripe.Dispute.modify, row.stripe_id, evidence={"uncategorized_text": "winning_evidence"}, submit=True)
    row.refresh_from_db()
    customer.refresh_from_db()
    assert row.outcome == Dispute.Outcome.WON and not customer.dispute_open
    assert customer_entitlement(customer).reason == Reason.VALID
    page = live.manage_page(customer)
    assert "Pro is active" in page and "disput" not in page.lower(), page
    live.assert_all_applied()


def test_a_first_payment_disputed_at_once_gets_its_licence_when_the_dispute_is_won(live, stripe_settings):
    """The test card disputes the charge before the invoice is paid: the subscription turns active while the
    dispute locks access, so no licence yet; winning the dispute issues it and emails the key."""
    from billing_console.models import Dispute

    stripe_settings.DISPUTE_LOCKS_ACCESS = True
    subscribe(live, "first@example.com", card="pm_card_createDispute")
    customer = live.customer("first@example.com")
    assert customer_entitlement(customer).reason == Reason.DISPUTED
    assert not License.objects.filter(customer=customer).exists()
    page = live.manage_page(customer)
    assert "A payment of $9.00 is disputed with your bank." in page, page  # not linked to its invoice: no date

    row = Dispute.objects.get(customer=customer)
    live.run(stripe.Dispute.modify, row.stripe_id, evidence={"uncategorized_text": "winning_evidence"}, submit=True)
    assert License.objects.filter(customer=customer, subscription_id=customer.subscription_id).exists()
    assert any("licence key" in m.subject for m in emails_to("first@example.com"))
    assert "Pro is active" in live.manage_page(customer)
    live.assert_all_applied()


def test_a_downgrade_keeps_the_active_devices_and_says_so(live, stripe_settings, client):
    from tests.licensing.conftest import new_signing_key

    stripe_settings.LICENSE_SIGNING_KEY, _ = new_signing_key()
    stripe_settings.LICENSE_VERIFY_KEYS_PREVIOUS = []
    stripe_settings.PLANS["pro"]["max_devices"] = 1
    cus = new_stripe_customer(live, "down@example.com")
    sub = live.run(stripe.Subscription.create, customer=cus.id, items=[{"price": "price_sandbox_team"}])
    [key_email] = [m for m in emails_to("down@example.com") if "licence key" in m.subject]
    key = next(line.strip() for line in key_email.body.splitlines() if line.strip().startswith("BCL-"))
    tokens = [client.post("/api/license/activate", {"key": key, "device_id": f"mac-{n}"},
                          content_type="application/json").json()["deviceAccessToken"] for n in range(3)]

    live.run(stripe.Subscription.modify, sub.id, items=[{"id": sub["items"]["data"][0]["id"],
                                                         "price": "price_sandbox_pro"}],
             proration_behavior="always_invoice")
    customer = live.customer("down@example.com")
    lic = License.objects.get(subscription_id=sub.id)
    assert (customer.plan, lic.max_devices, lic.active_devices) == ("pro", 1, 3)
    told = ("Your plan now allows 1 device. 3 devices are active and keep working; "
            "deactivate 3 to activate a new one.")
    body = client.get("/api/license/status", HTTP_AUTHORIZATION=f"Bearer {tokens[0]}").json()
    assert (body["active"], body["activeDevices"], body["devicesOverLimit"], body["deviceLimitMessage"]) == (
        True, 3, 2, told)
    page = live.manage_page(customer)
    assert told in page and "Pro is active" in page, page
    refused = client.post("/api/license/activate", {"key": key, "device_id": "mac-new"}, content_type="application/json")
    assert refused.status_code == 409 and refused.json()["error"] == told

    client.post("/api/license/deactivate", {"device_id": "mac-2"}, content_type="application/json",
                HTTP_AUTHORIZATION=f"Bearer {tokens[2]}")
    body = client.get("/api/license/status", HTTP_AUTHORIZATION=f"Bearer {tokens[0]}").json()
    assert (body["activeDevices"], body["devicesOverLimit"]) == (2, 1)
    live.assert_all_applied()


def test_a_renewal_needing_3d_secure_asks_the_customer_then_pays(live):
    from dunning.models import DunningCase

    cus, sub = subscribe(live, "sca@example.com")
    live.run(stripe.PaymentMethod.attach, "pm_card_authenticationRequired", customer=cus.id)
    pms = stripe.Customer.list_payment_methods(cus.id, api_key=API_KEY).data
    sca = [pm for pm in pms if pm.id != "pm_card_visa" and pm.card.last4 != "4242"] or pms
    live.run(stripe.Customer.modify, cus.id, invoice_settings={"default_payment_method": sca[0].id})
    live.advance(days=31)
    assert "invoice.payment_action_required" in live.types()

    customer = live.customer("sca@example.com")
    [ask] = [m for m in emails_to("sca@example.com") if "confirm" in m.subject.lower()]
    case = DunningCase.objects.get(customer=customer)
    assert case.action_required_at is not None
    renewal = stripe.Invoice.retrieve(case.invoice_id, api_key=API_KEY)
    assert renewal.hosted_invoice_url in ask.body and "not declined" in ask.body
    # The card was not declined: no "could not collect your payment" email beside the request to confirm.
    assert not [m.subject for m in emails_to("sca@example.com") if "did not go through" in m.subject]
    page = live.manage_page(customer)
    assert renewal.hosted_invoice_url in page and "$9.00" in page, page

    intent = next(e["data"]["object"]["id"] for e in live.emu.events if e["type"] == "payment_intent.requires_action")
    live.emu.authenticate(intent, "complete")
    live.sync()
    customer.refresh_from_db()
    case.refresh_from_db()
    assert customer.subscription_status == "active" and case.status != DunningCase.Status.OPEN
    page = live.manage_page(customer)
    assert "Pro is active" in page and "Amount due now" not in page, page
    live.assert_all_applied()


def test_pause_and_resume(live, stripe_settings):
    stripe_settings.PAUSED_SUBSCRIPTION_ENTITLED = False
    cus, sub = subscribe(live, "pause@example.com")
    stripe.StripeClient(API_KEY, base_addresses={"api": live.emu.url}).raw_request(
        "post", f"/v1/subscriptions/{sub.id}/pause", type="subscription")
    live.sync()
    customer = live.customer("pause@example.com")
    assert customer.subscription_status == "paused"
    ent = customer_entitlement(customer)
    assert (ent.entitled, ent.reason) == (False, Reason.PAUSED)
    page = live.manage_page(customer)
    assert "Pro is paused" in page and "Next payment" not in page and "Access is stopped" in page, page
    assert len(invoice_emails("pause@example.com")) == 1  # a paused subscription bills nothing

    live.run(stripe.Subscription.resume, sub.id, billing_cycle_anchor="now")
    customer.refresh_from_db()
    assert customer.subscription_status == "active" and customer_entitlement(customer).reason == Reason.VALID
    page = live.manage_page(customer)
    assert "Pro is active" in page and "paused" not in page, page
    _, resumed_bill = invoice_emails("pause@example.com")  # resuming bills a new period at once
    assert_paid_invoice_email(resumed_bill, "$9.00")
    live.assert_all_applied()


def test_voiding_the_failed_renewal_closes_the_dunning_case(live):
    from billing_console.models import Invoice
    from dunning.models import DunningCase

    cus, sub = subscribe(live, "void@example.com")
    live.emu.set_card(cus.id, "decline")
    live.advance(days=31)
    customer = live.customer("void@example.com")
    assert customer.subscription_status == "past_due"
    case = DunningCase.objects.get(customer=customer)
    assert case.status == DunningCase.Status.OPEN
    assert "Amount due now" in live.manage_page(customer)
    [failed] = [m for m in emails_to("void@example.com") if "did not go through" in m.subject]
    _, renewal_bill = invoice_emails("void@example.com")
    assert "Amount due: $9.00" in renewal_bill.body and "pay it online" in renewal_bill.body  # truly owed then

    live.run(stripe.Invoice.void_invoice, case.invoice_id)
    case.refresh_from_db()
    assert (case.status, case.close_reason) == (DunningCase.Status.CANCELED, "invoice_voided")
    assert Invoice.objects.get(stripe_id=case.invoice_id).status == "void"
    page = live.manage_page(customer)
    assert "Amount due now" not in page and "Void" in page, page
    assert not [m for m in emails_to("void@example.com") if m is not failed and "did not go through" in m.subject]
    live.assert_all_applied()


def test_after_the_run_dj_stripe_holds_the_mirrored_objects(live, stripe_settings):
    from djstripe.models import Charge as DjCharge, Customer as DjCustomer, Invoice as DjInvoice
    from djstripe.models import Refund as DjRefund, Subscription as DjSubscription

    from billing_console.stripe.mirror import webhook_events_mirror

    stripe_settings.STRIPE_DJSTRIPE_SYNC = ["*"]
    cus, sub = subscribe(live, "mirror@example.com")
    live.run(stripe.Refund.create, charge=paid_charge(live, cus.id).id, amount=300)
    live.advance(days=31)
    live.assert_all_applied()

    webhook_events_mirror()
    assert not WebhookEvent.objects.filter(mirror=WebhookEvent.Mirror.FAILED).values_list("type", "mirror_error").exists()
    assert not WebhookEvent.objects.filter(mirror=WebhookEvent.Mirror.DUE).exists()
    assert DjCustomer.objects.get(id=cus.id).email == "mirror@example.com"
    assert DjSubscription.objects.get(id=sub.id).status == "active"
    assert DjInvoice.objects.filter(subscription_id=sub.id).count() == 2
    charges = {c.id: c.stripe_data for c in DjCharge.objects.filter(customer_id=cus.id)}
    assert len(charges) == 2 and sorted(c["amount_refunded"] for c in charges.values()) == [0, 300]
    assert DjRefund.objects.filter(charge_id__in=charges).count() == 1
