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
                         lines=[("Pro plan (monthly)", 900)], **kwargs)
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
