"""The invoice PDF and email say what is true for the invoice's state: nothing "due" once paid, the service
period from the lines, a stamp per final state, discounts and refunds shown."""
import io
from datetime import datetime, timezone as dt_timezone

import pytest
from django.core import mail
from django.template.loader import render_to_string
from pypdf import PdfReader

from billing_console.invoicing.services import invoice_apply_stripe, invoice_pdf_context, invoice_render_pdf
from billing_console.models import Invoice
from tests.invoicing.factories import CustomerFactory, stripe_event, stripe_invoice
from tests.invoicing.test_invoice_delivery import pdf_text

pytestmark = pytest.mark.django_db

NOV_27 = int(datetime(2026, 11, 27, 9, 0, tzinfo=dt_timezone.utc).timestamp())
DEC_27 = int(datetime(2026, 12, 27, 9, 0, tzinfo=dt_timezone.utc).timestamp())


@pytest.fixture
def customer():
    return CustomerFactory(email="bob@example.com", name="Bob Builder", stripe_customer_id="cus_bob", subscription_id="sub_bob")


def _apply(obj) -> Invoice:
    return invoice_apply_stripe(obj=obj, at=datetime.now(dt_timezone.utc), event_type="invoice.updated")


def _texts(invoice: Invoice) -> tuple[str, str]:
    pdf = "\n".join(p.extract_text() for p in PdfReader(io.BytesIO(invoice_render_pdf(invoice))).pages)
    email = render_to_string("invoices/email.txt", invoice_pdf_context(invoice))
    return pdf, email


def _first_invoice(**kwargs) -> dict:
    """A subscription's first invoice as Stripe sends it: its own period_start/period_end are both the creation
    instant; the line carries the month it pays for."""
    obj = stripe_invoice(customer="cus_bob", subscription="sub_bob", created=NOV_27, period_start=NOV_27,
                         lines=kwargs.pop("lines", [("Pro plan (monthly)", 900)]), **kwargs)
    obj["period_end"] = NOV_27
    for line in obj["lines"]["data"]:
        line["period"] = {"start": NOV_27, "end": DEC_27}
    return obj


def test_paid_invoice_email_and_pdf_never_say_amount_due_or_pay_online(deliver_events, invoice_settings, customer):
    obj = _first_invoice(status="paid", number="BOB-0001")
    deliver_events(stripe_event("invoice.paid", obj))
    invoice = Invoice.objects.get(stripe_id=obj["id"])
    text = pdf_text(invoice.pdf_path)
    body = mail.outbox[0].body
    for shown in (text, body):
        assert "Amount due" not in shown and "pay it online" not in shown and "pay online" not in shown
        assert "Amount paid" in shown and "$9.00" in shown
    assert "PAID" in text
    assert "This invoice is paid. Nothing more is due." in body


def test_pdf_service_period_comes_from_the_lines_not_the_invoice_creation_instant(customer):
    invoice = _apply(_first_invoice(status="paid"))
    pdf, email = _texts(invoice)
    assert "2026-11-27 to 2026-11-27" not in pdf
    assert "Service period: 2026-11-27 to 2026-12-27" in pdf
    assert "Service period: 27 November 2026 to 27 December 2026" in email


def test_open_invoice_shows_amount_due_and_the_pay_link(customer):
    obj = _first_invoice(status="open")
    invoice = _apply(obj)
    pdf, email = _texts(invoice)
    assert "Amount due $9.00" in pdf and f"View and pay online: {obj['hosted_invoice_url']}" in pdf
    assert "Amount due: $9.00" in email and f"View and pay it online: {obj['hosted_invoice_url']}" in email
    assert "PAID" not in pdf


def test_partly_paid_invoice_is_due_only_for_what_remains(customer):
    invoice = _apply(_first_invoice(status="open", amount_paid=400))
    pdf, email = _texts(invoice)
    assert "Amount due $5.00" in pdf and "Amount due: $5.00" in email and "Amount paid $4.00" in pdf


@pytest.mark.parametrize("status, stamp, sentence", [
    ("void", "VOID", "This invoice was voided. Nothing is due."),
    ("uncollectible", "UNCOLLECTIBLE", "This invoice was marked uncollectible."),
])
def test_final_states_are_stamped_and_nothing_is_due(customer, status, stamp, sentence):
    invoice = _apply(_first_invoice(status=status, amount_paid=0))
    pdf, email = _texts(invoice)
    assert stamp in pdf and sentence in email
    assert "Amount due" not in pdf and "Amount due" not in email and "pay" not in email.lower().replace("amount paid", "")


def test_refunded_invoice_shows_the_refund_and_the_refunded_stamp(customer):
    obj = _first_invoice(status="paid")
    obj["post_payment_credit_notes_amount"] = 900
    invoice = _apply(obj)
    pdf, email = _texts(invoice)
    assert "REFUNDED" in pdf and "Refunded $9.00" in pdf and "Refunded: $9.00" in email
    assert "Amount due" not in pdf and "refunded in full" in email


def test_partial_refund_keeps_paid_and_shows_the_refunded_amount(customer):
    obj = _first_invoice(status="paid")
    obj["amount_refunded"] = 300
    pdf, email = _texts(_apply(obj))
    assert "PAID" in pdf and "REFUNDED" not in pdf and "Refunded $3.00" in pdf and "Refunded: $3.00" in email


def test_each_discount_is_a_line_with_its_coupon_name(customer):
    obj = _first_invoice(status="paid")
    obj["subtotal"], obj["total"], obj["amount_due"], obj["amount_paid"] = 900, 720, 720, 720
    obj["total_discount_amounts"] = [{"amount": 180, "discount": {"id": "di_1", "coupon": {"id": "LAUNCH", "name": "Launch", "percent_off": 20}}}]
    pdf, email = _texts(_apply(obj))
    assert "Subtotal $9.00" in pdf and "Launch (20% off) -$1.80" in pdf and "Total (USD) $7.20" in pdf
    assert "Launch (20% off): -$1.80" in email and "Total: $7.20" in email


def test_money_follows_the_locale_in_the_email(customer, settings):
    from django.utils import translation

    invoice = _apply(_first_invoice(status="open", currency="eur"))
    with translation.override("de"):
        email = render_to_string("invoices/email.txt", invoice_pdf_context(invoice))
    assert "Amount due: 9,00\xa0€" in email


# --- Invoices nothing is owed on: a trial's $0 invoice, a 100% discount, account credit ------------------
def _now() -> int:
    return int(datetime.now(dt_timezone.utc).timestamp())


def _words(dt_value: datetime) -> str:
    from billing_console.wording.subscription import day

    return day(dt_value)


def _trial_invoice(start: int, end: int, **kwargs) -> dict:
    """A trial's first invoice as Stripe sends it: $0, paid at once, one line whose period is the trial."""
    obj = stripe_invoice(customer="cus_bob", subscription="sub_bob", created=start, period_start=start, status="paid",
                         lines=[("Trial period for Pro", 0)], **kwargs)
    obj["period_end"], obj["billing_reason"] = start, "subscription_create"
    for line in obj["lines"]["data"]:
        line.update(period={"start": start, "end": end}, quantity=1,
                    pricing={"type": "price_details", "price_details": {"price": "price_pro", "product": "prod_pro"},
                             "unit_amount_decimal": "0"},
                    parent={"type": "subscription_item_details",
                            "subscription_item_details": {"subscription": "sub_bob", "proration": False}})
    return obj


@pytest.fixture
def mirrored_price(monkeypatch):
    """dj-stripe's mirror holds price_pro at $9.00 (as after sync_catalog)."""
    monkeypatch.setattr("billing_console.wording.invoice.price_unit_amount",
                        lambda price_id: (900, "usd") if price_id == "price_pro" else None)


@pytest.fixture
def trialing(customer):
    start, end = _now() - 3600, _now() + 14 * 86400
    customer.subscription_status, customer.trial_end = "trialing", datetime.fromtimestamp(end, tz=dt_timezone.utc)
    customer.save()
    return start, end


def _html(invoice: Invoice) -> str:
    return " ".join(render_to_string("invoices/invoice.html", invoice_pdf_context(invoice)).split())


def test_a_trial_invoice_says_nothing_is_charged_and_when_the_first_payment_is(
        deliver_events, invoice_settings, customer, trialing, mirrored_price):
    start, end = trialing
    obj = _trial_invoice(start, end, number="BOB-T1")
    deliver_events(stripe_event("invoice.finalized", {**obj, "status": "open"}, created=start),
                   stripe_event("invoice.paid", obj, created=start + 1))
    [message] = mail.outbox
    invoice = Invoice.objects.get(stripe_id=obj["id"])
    ends = _words(customer.trial_end)
    body, html = message.body, _html(invoice)
    pdf = " ".join(pdf_text(invoice.pdf_path).split())
    for shown in (body, html, pdf):
        assert "Trial started: nothing is charged today." in shown, shown
        assert f"The first payment of $9.00 is on {ends}, when the trial ends." in shown, shown
        assert "Cancel before then and you pay nothing." in shown
        assert "Amount paid" not in shown and "Amount due" not in shown and "pay it online" not in shown
    assert "Total: $0.00" in body and "This invoice is paid" not in body
    assert "PAID" in pdf and "open" not in pdf.lower().replace("opens", "")


def test_a_trial_invoice_promises_no_amount_stripe_will_change(customer, trialing, mirrored_price):
    start, end = trialing
    obj = _trial_invoice(start, end)
    obj["discounts"] = ["di_launch"]  # a coupon on the subscription: the first payment is Stripe's to compute
    pdf, email = _texts(_apply(obj))
    assert f"The first payment is on {_words(customer.trial_end)}, when the trial ends." in email
    assert "$9.00" not in email and "$9.00" not in pdf


def test_a_trial_invoice_without_a_mirrored_price_names_the_date_only(customer, trialing):
    start, end = trialing
    _, email = _texts(_apply(_trial_invoice(start, end)))
    assert f"The first payment is on {_words(customer.trial_end)}, when the trial ends." in email


def test_a_trial_set_to_end_says_no_payment_will_be_taken(customer, trialing, mirrored_price):
    start, end = trialing
    customer.cancel_at_period_end = True
    customer.save()
    pdf, email = _texts(_apply(_trial_invoice(start, end)))
    for shown in (" ".join(pdf.split()), email):
        assert f"The subscription is set to end with the trial on {_words(customer.trial_end)}: no payment will be " \
               "taken." in shown
        assert "first payment" not in shown


def test_a_trial_invoice_resent_after_the_trial_says_nothing_was_charged_for_it(customer, mirrored_price):
    start, end = _now() - 20 * 86400, _now() - 6 * 86400
    customer.subscription_status, customer.trial_end = "active", datetime.fromtimestamp(end, tz=dt_timezone.utc)
    customer.save()
    _, email = _texts(_apply(_trial_invoice(start, end)))
    assert f"Nothing was charged for the trial ({_words(datetime.fromtimestamp(start, tz=dt_timezone.utc))} to " \
           f"{_words(customer.trial_end)})." in email
    assert "Trial started" not in email and "first payment" not in email


def test_a_trial_invoice_of_a_customer_not_linked_yet_is_known_by_stripes_line(mirrored_price):
    start, end = _now() - 3600, _now() + 7 * 86400
    obj = _trial_invoice(start, end)
    obj["customer"] = "cus_unknown"
    _, email = _texts(_apply(obj))
    ends = _words(datetime.fromtimestamp(end, tz=dt_timezone.utc))
    assert "Trial started: nothing is charged today." in email and f"$9.00 is on {ends}" in email


def test_a_zero_invoice_that_is_no_trial_says_nothing_is_charged(customer):
    obj = _first_invoice(status="paid")
    obj["total"], obj["amount_due"], obj["amount_paid"], obj["amount_remaining"] = 0, 0, 0, 0
    obj["total_discount_amounts"] = [{"amount": 900, "discount": {"coupon": {"id": "FREE", "name": "Free month",
                                                                             "percent_off": 100}}}]
    pdf, email = _texts(_apply(obj))
    assert "Nothing is charged for this invoice." in email and "Nothing is charged for this invoice." in pdf
    assert "Free month (100% off): -$9.00" in email and "Total: $0.00" in email
    assert "Amount paid" not in email and "Trial" not in email and "Amount paid" not in pdf


def test_an_invoice_paid_from_account_credit_says_so_not_amount_paid_zero(customer):
    obj = _first_invoice(status="paid")
    obj["amount_due"], obj["amount_paid"], obj["amount_remaining"] = 0, 0, 0
    obj["starting_balance"], obj["ending_balance"] = -1500, -600
    pdf, email = _texts(_apply(obj))
    assert "Total: $9.00" in email and "Credit applied: -$9.00" in email
    assert "This invoice is paid from your account credit. Nothing more is due." in email
    assert "Amount paid" not in email and "Amount paid" not in pdf
    assert "Credit applied -$9.00" in pdf and "PAID" in pdf


def test_credit_then_card_shows_both(customer):
    obj = _first_invoice(status="paid")
    obj["amount_due"], obj["amount_paid"], obj["amount_remaining"] = 400, 400, 0
    pdf, email = _texts(_apply(obj))
    assert "Credit applied: -$5.00" in email and "Amount paid: $4.00" in email
    assert "This invoice is paid. Nothing more is due." in email


def test_an_earlier_balance_carried_onto_an_open_invoice_is_shown_with_the_amount_due(customer):
    obj = _first_invoice(status="open")
    obj["amount_due"], obj["amount_remaining"] = 1200, 1200
    pdf, email = _texts(_apply(obj))
    assert "Earlier balance added: $3.00" in email and "Amount due: $12.00" in email
    assert "Earlier balance added $3.00" in pdf and "Amount due $12.00" in pdf


def test_an_open_invoice_nothing_is_owed_on_never_reads_open(customer):
    obj = _first_invoice(status="open")
    obj["amount_due"], obj["amount_remaining"] = 0, 0  # account credit covers it; Stripe marks it paid next
    pdf, email = _texts(_apply(obj))
    assert "nothing due" in pdf.lower() and "\nopen\n" not in f"\n{pdf.lower()}\n"
    assert "Your account credit covers this invoice. Nothing is due." in email
    assert "Amount due" not in email and "pay it online" not in email


def test_a_zero_invoice_is_sent_once_stripe_marks_it_paid_not_at_finalization(deliver_events, invoice_settings,
                                                                              customer):
    obj = _first_invoice(status="open", number="BOB-Z1")
    obj["amount_due"], obj["amount_remaining"] = 0, 0
    deliver_events(stripe_event("invoice.finalized", obj, created=NOV_27))
    assert not mail.outbox and Invoice.objects.get(stripe_id=obj["id"]).next_delivery_at is None
    deliver_events(stripe_event("invoice.paid", {**obj, "status": "paid"}, created=NOV_27 + 1))
    [message] = mail.outbox
    assert "This invoice is paid from your account credit." in message.body


def test_invoice_words_survive_odd_line_data(customer, trialing, mirrored_price):
    """Stripe never sends these, but a hand-edited or older payload must still render, promising no amount."""
    start, end = trialing
    obj = _trial_invoice(start, end)
    obj["lines"]["data"][0].update(quantity="two", pricing=None, price={"id": "price_pro"}, description=None)
    obj["lines"]["data"].append("not a line")
    _, email = _texts(_apply(obj))
    assert f"The first payment is on {_words(customer.trial_end)}" in email


def test_a_negative_invoice_says_the_credit_goes_to_the_balance_not_an_earlier_balance(customer):
    """A downgrade's proration can total less than zero: Stripe credits it to the customer's balance."""
    obj = _first_invoice(status="paid", lines=[("Unused time on Team", -2000), ("Remaining time on Pro", 1500)])
    obj["total"], obj["subtotal"], obj["amount_due"], obj["amount_paid"], obj["amount_remaining"] = -500, -500, 0, 0, 0
    pdf, email = _texts(_apply(obj))
    sentence = "Nothing is due: $5.00 is credited to your account balance and taken off your next invoices."
    assert sentence in email and sentence in " ".join(pdf.split())
    assert "Total: -$5.00" in email and "Earlier balance" not in email and "Credit applied" not in email
    assert "Amount paid" not in email and "This invoice is paid" not in email
