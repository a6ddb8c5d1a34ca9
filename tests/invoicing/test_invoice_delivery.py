import io
import smtplib
from datetime import timedelta
from unittest import mock

import pytest
from django.core import mail
from django.core.files.storage import default_storage
from django.utils import timezone
from pypdf import PdfReader

from billing_console.errors import ServiceError
from billing_console.invoicing.services import invoice_deliver, invoice_resend
from billing_console.invoicing.tasks import invoice_delivery_retry
from billing_console.models import AuditEvent, CronRun, Invoice
from tests.invoicing.factories import CustomerFactory, stripe_event, stripe_invoice

pytestmark = pytest.mark.django_db


def pdf_text(path: str) -> str:
    with default_storage.open(path, "rb") as fh:
        return "\n".join(page.extract_text() for page in PdfReader(io.BytesIO(fh.read())).pages)


def kinds(invoice: Invoice) -> list[str]:
    return list(invoice.events.order_by("at", "pk").values_list("kind", flat=True))


@pytest.fixture
def customer():
    return CustomerFactory(email="bob@example.com", name="Bob Builder", stripe_customer_id="cus_bob", subscription_id="sub_bob")


def test_finalized_invoice_is_rendered_stored_and_emailed_with_pdf_and_bcc(deliver_events, invoice_settings, customer):
    obj = stripe_invoice(collection_method="send_invoice", customer="cus_bob", subscription="sub_bob", number="BOB-0042", lines=[("Pro plan", 1900)], tax=361)
    deliver_events(stripe_event("invoice.finalized", obj))

    invoice = Invoice.objects.get(stripe_id=obj["id"])
    assert invoice.pdf_path == f"invoices/cus_bob/{obj['id']}.pdf"
    text = pdf_text(invoice.pdf_path)
    assert "BOB-0042" in text and "$22.61" in text and "$19.00" in text and "$3.61" in text and "Bob Builder" in text

    assert len(mail.outbox) == 1
    message = mail.outbox[0]
    assert message.to == ["bob@example.com"] and message.bcc == ["books@bcc.example.com"]
    assert "BOB-0042" in message.subject and "$22.61" in message.body
    (name, content, mimetype), = message.attachments
    assert name == "BOB-0042.pdf" and mimetype == "application/pdf" and content.startswith(b"%PDF")

    assert invoice.delivery_status == Invoice.Delivery.SENT and invoice.emailed_at and invoice.next_delivery_at is None
    assert kinds(invoice) == ["webhook_received", "pdf_rendered", "email_sent"]
    rendered = invoice.events.get(kind="pdf_rendered").data
    assert isinstance(rendered["duration_ms"], int) and rendered["path"] == invoice.pdf_path
    assert invoice.events.get(kind="email_sent").data["message_id"] == message.extra_headers["Message-ID"]


def test_zero_decimal_currency_is_printed_without_minor_units(deliver_events, invoice_settings, customer):
    obj = stripe_invoice(collection_method="send_invoice", customer="cus_bob", currency="jpy", number="JP-1", lines=[("Pro plan", 1000)])
    deliver_events(stripe_event("invoice.finalized", obj))
    text = pdf_text(Invoice.objects.get().pdf_path)
    assert "¥1,000" in text and "¥10.00" not in text


def test_replayed_finalized_event_never_emails_twice(deliver_events, invoice_settings, customer):
    evt = stripe_event("invoice.finalized", stripe_invoice(collection_method="send_invoice", customer="cus_bob"))
    deliver_events(evt)
    deliver_events(evt)  # replay from the admin, or Stripe's duplicate delivery
    deliver_events(stripe_event("invoice.paid", {**evt["data"]["object"], "status": "paid"}))
    assert len(mail.outbox) == 1
    invoice = Invoice.objects.get()
    assert kinds(invoice).count("email_sent") == 1 and invoice.delivery_attempts == 1


def test_a_second_worker_cannot_take_an_invoice_being_delivered(customer):
    invoice = Invoice.objects.create(stripe_id="in_claimed", stripe_customer_id="cus_bob", customer=customer,
                                     currency="usd", status="open", next_delivery_at=timezone.now())
    # The first worker holds the lease (claimed, rendering): the second gets nothing to do.
    Invoice.objects.filter(pk=invoice.pk).update(next_delivery_at=timezone.now() + timedelta(minutes=10), delivery_attempts=1)
    assert invoice_deliver(invoice_id=invoice.pk) is None
    assert len(mail.outbox) == 0


def test_failed_send_is_retried_with_backoff_then_succeeds(deliver_events, invoice_settings, customer):
    obj = stripe_invoice(collection_method="send_invoice", customer="cus_bob")
    with mock.patch("django.core.mail.backends.locmem.EmailBackend.send_messages",
                    side_effect=smtplib.SMTPServerDisconnected("Connection unexpectedly closed")):
        deliver_events(stripe_event("invoice.finalized", obj))
    invoice = Invoice.objects.get()
    assert invoice.delivery_status == Invoice.Delivery.RENDERED and invoice.emailed_at is None
    assert invoice.delivery_attempts == 1 and "Connection unexpectedly closed" in invoice.delivery_error
    wait = invoice.next_delivery_at - timezone.now()
    assert timedelta(seconds=50) < wait <= timedelta(seconds=60)

    invoice_delivery_retry()  # not due yet: nothing happens
    assert len(mail.outbox) == 0

    Invoice.objects.filter(pk=invoice.pk).update(next_delivery_at=timezone.now() - timedelta(seconds=1))
    invoice_delivery_retry()
    invoice.refresh_from_db()
    assert len(mail.outbox) == 1 and invoice.delivery_status == Invoice.Delivery.SENT and invoice.delivery_attempts == 2
    assert kinds(invoice) == ["webhook_received", "pdf_rendered", "email_failed", "delivery_retry_scheduled", "email_sent"]
    assert CronRun.objects.filter(name="invoice_delivery_retry", status="ok").count() == 2


def test_render_failure_is_recorded_and_retried(deliver_events, invoice_settings, customer):
    with mock.patch("billing_console.invoicing.services.invoice_render_pdf", side_effect=OSError("cairo exploded")):
        deliver_events(stripe_event("invoice.finalized", stripe_invoice(collection_method="send_invoice", customer="cus_bob")))
    invoice = Invoice.objects.get()
    assert invoice.delivery_status == Invoice.Delivery.PENDING and not invoice.pdf_path
    failed = invoice.events.get(kind="pdf_render_failed").data
    assert "cairo exploded" in failed["error"] and len(mail.outbox) == 0

    Invoice.objects.filter(pk=invoice.pk).update(next_delivery_at=timezone.now())
    invoice_deliver(invoice_id=invoice.pk)
    invoice.refresh_from_db()
    assert invoice.delivery_status == Invoice.Delivery.SENT and len(mail.outbox) == 1


def test_delivery_gives_up_after_the_last_attempt_and_shows_failed(invoice_settings, customer):
    invoice = Invoice.objects.create(stripe_id="in_nomail", stripe_customer_id="cus_x", currency="usd", status="open",
                                     next_delivery_at=timezone.now(), data=stripe_invoice(collection_method="send_invoice", customer="cus_x"))
    for _ in range(invoice_settings.INVOICE_DELIVERY_MAX_ATTEMPTS):
        Invoice.objects.filter(pk=invoice.pk).exclude(delivery_status="failed").update(next_delivery_at=timezone.now())
        invoice_delivery_retry()
    invoice.refresh_from_db()
    assert invoice.delivery_status == Invoice.Delivery.FAILED and invoice.next_delivery_at is None
    assert "No email address" in invoice.delivery_error and len(mail.outbox) == 0
    assert kinds(invoice).count("email_failed") == 3 and kinds(invoice)[-1] == "delivery_gave_up"
    assert CronRun.objects.filter(name="invoice_delivery_retry").order_by("-started_at", "-pk").first().status == "errors"
    # Failed for good: the cron leaves it alone; only support's resend sends it again.
    assert invoice_deliver(invoice_id=invoice.pk) is None


def test_resend_emails_again_and_is_audited(deliver_events, invoice_settings, customer, django_capture_on_commit_callbacks):
    deliver_events(stripe_event("invoice.finalized", stripe_invoice(collection_method="send_invoice", customer="cus_bob")))
    invoice = Invoice.objects.get()
    with django_capture_on_commit_callbacks(execute=True):
        invoice_resend(invoice=invoice, actor_type="admin", actor="support1")
    assert len(mail.outbox) == 2
    invoice.refresh_from_db()
    assert invoice.delivery_status == Invoice.Delivery.SENT
    assert kinds(invoice).count("email_sent") == 2 and kinds(invoice).count("pdf_rendered") == 1
    audit = AuditEvent.objects.get(action="invoice.resend_requested")
    assert audit.actor == "support1" and audit.customer == customer and audit.data["delivery_status"] == "sent"


def test_draft_invoice_cannot_be_resent(customer):
    invoice = Invoice.objects.create(stripe_id="in_draft", stripe_customer_id="cus_bob", currency="usd", status="draft")
    with pytest.raises(ServiceError, match="not finalized"):
        invoice_resend(invoice=invoice, actor_type="admin", actor="support1")
    assert not AuditEvent.objects.exists() and len(mail.outbox) == 0


def test_customer_text_is_escaped_and_the_renderer_fetches_nothing(deliver_events, invoice_settings):
    CustomerFactory(email="eve@example.com", name='<img src="http://127.0.0.1:9/x.png">Eve', stripe_customer_id="cus_eve")
    obj = stripe_invoice(collection_method="send_invoice", customer="cus_eve", number="EVE-1",
                         lines=[('<link rel="stylesheet" href="file:///etc/passwd">Pro', 100)])
    with mock.patch("billing_console.invoicing.pdf._refuse_fetch", side_effect=AssertionError("fetched")) as fetch:
        deliver_events(stripe_event("invoice.finalized", obj))
    assert not fetch.called
    invoice = Invoice.objects.get()
    assert invoice.delivery_status == Invoice.Delivery.SENT
    assert '<img src="http://127.0.0.1:9/x.png">Eve' in pdf_text(invoice.pdf_path)  # shown as text, not loaded


def test_invoice_ids_cannot_escape_the_storage_folder(deliver_events, invoice_settings):
    obj = stripe_invoice(collection_method="send_invoice", id="in_../../etc/x", customer="cus_../..", customer_email="z@example.com")
    deliver_events(stripe_event("invoice.finalized", obj))
    assert Invoice.objects.get().pdf_path == "invoices/cus______/in_______etc_x.pdf"


def test_paid_event_delivers_an_invoice_whose_finalized_event_never_came(deliver_events, invoice_settings, customer):
    obj = stripe_invoice(collection_method="send_invoice", customer="cus_bob", status="paid")
    deliver_events(stripe_event("invoice.paid", obj))
    deliver_events(stripe_event("invoice.finalized", {**obj, "status": "open"}, created=obj["created"]))  # late
    assert len(mail.outbox) == 1 and Invoice.objects.get().status == "paid"


def test_an_invoice_charged_automatically_is_sent_once_the_charge_is_decided(deliver_events, invoice_settings,
                                                                            customer):
    paid = stripe_invoice(customer="cus_bob")
    deliver_events(stripe_event("invoice.finalized", paid))
    assert not mail.outbox and Invoice.objects.get(stripe_id=paid["id"]).next_delivery_at is None  # Stripe charges it next
    deliver_events(stripe_event("invoice.paid", {**paid, "status": "paid", "amount_paid": paid["total"],
                                                 "amount_remaining": 0}, created=paid["created"] + 5))
    [message] = mail.outbox
    assert "This invoice is paid" in message.body and "Amount due" not in message.body

    failed = stripe_invoice(customer="cus_bob", number="INV-0002")
    deliver_events(stripe_event("invoice.finalized", failed))
    deliver_events(stripe_event("invoice.payment_failed", failed, created=failed["created"] + 5))
    [owed] = [m for m in mail.outbox if "INV-0002" in m.subject]
    assert "Amount due" in owed.body and "pay it online" in owed.body
