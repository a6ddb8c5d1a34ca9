"""Invoice delivery through Django's real SMTP backend to the SMTP stand-in (sandbox.smtp)."""
import io

import pytest
from pypdf import PdfReader

from billing_console.models import Invoice
from sandbox.smtp import MailCatcher
from tests.invoicing.factories import CustomerFactory, stripe_event, stripe_invoice

pytestmark = pytest.mark.django_db


@pytest.fixture
def smtp(settings):
    with MailCatcher(port=0) as catcher:
        settings.EMAIL_BACKEND = "django.core.mail.backends.smtp.EmailBackend"
        settings.EMAIL_HOST, settings.EMAIL_PORT = catcher.host, catcher.port
        settings.EMAIL_USE_TLS = settings.EMAIL_USE_SSL = False
        settings.EMAIL_HOST_USER = settings.EMAIL_HOST_PASSWORD = ""
        yield catcher


def test_invoice_reaches_a_real_smtp_server_with_pdf_and_bcc(smtp, deliver_events, invoice_settings):
    CustomerFactory(email="carol@example.com", stripe_customer_id="cus_carol")
    obj = stripe_invoice(collection_method="send_invoice", customer="cus_carol", number="CAR-0007", lines=[("Team plan", 4900)], currency="eur")
    deliver_events(stripe_event("invoice.finalized", obj))

    mail = smtp.wait_for(lambda m: "carol@example.com" in m.to, timeout=10)
    assert mail.bcc == ["books@bcc.example.com"] and "Bcc" not in mail.headers
    assert mail.subject.startswith("Invoice CAR-0007") and "€49.00" in mail.text
    (attachment,) = mail.attachments
    assert attachment.filename == "CAR-0007.pdf" and attachment.content_type == "application/pdf"
    text = PdfReader(io.BytesIO(attachment.data)).pages[0].extract_text()
    assert "CAR-0007" in text and "€49.00" in text
    invoice = Invoice.objects.get()
    sent = invoice.events.get(kind="email_sent").data
    assert sent["message_id"].strip("<>") == mail.headers["Message-ID"].strip("<>")
