"""The SMTP stand-in: real SMTP in, parsed messages out (Python and HTTP)."""
import smtplib
import threading
from email.message import EmailMessage

import httpx
import pytest
from django.core import mail as django_mail

from sandbox.smtp import MailCatcher

PDF = b"%PDF-1.7\n\x00\xff\xfe binary invoice bytes\n%%EOF"


@pytest.fixture
def catcher():
    with MailCatcher(port=0, http_port=0) as server:
        yield server


@pytest.fixture(scope="module")
def http():
    with httpx.Client(timeout=5) as client:
        yield client


def invoice_mail():
    message = EmailMessage()
    message["From"] = "Billing <billing@example.com>"
    message["To"] = "Alice <alice@example.com>"
    message["Cc"] = "finance@alice.example"
    message["Subject"] = "Invoice INV-0001 — paid"
    message.set_content("Your invoice is attached.\nManage: http://127.0.0.1:8000/manage/abc/\n")
    message.add_alternative('<p>Your invoice. <a href="http://127.0.0.1:8000/manage/abc/">Manage</a></p>\n',
                            subtype="html")
    message.add_attachment(PDF, maintype="application", subtype="pdf", filename="INV-0001.pdf")
    return message


def deliver(catcher, message, recipients):
    with smtplib.SMTP(catcher.host, catcher.port, timeout=5) as client:
        client.send_message(message, to_addrs=recipients)


def test_mail_with_attachment_and_bcc_is_captured(catcher):
    deliver(catcher, invoice_mail(), ["alice@example.com", "finance@alice.example", "archive@billing.example"])
    mail = catcher.wait_for(timeout=5)
    assert mail.mail_from == "billing@example.com"
    assert mail.to == ["alice@example.com"] and mail.cc == ["finance@alice.example"]
    assert mail.bcc == ["archive@billing.example"]
    assert "Bcc" not in mail.headers
    assert mail.subject == "Invoice INV-0001 — paid"
    assert mail.text == "Your invoice is attached.\nManage: http://127.0.0.1:8000/manage/abc/\n"
    assert 'href="http://127.0.0.1:8000/manage/abc/"' in mail.html
    [attachment] = mail.attachments
    assert (attachment.filename, attachment.content_type, attachment.data) == ("INV-0001.pdf", "application/pdf", PDF)


def test_plain_text_mail_has_no_html(catcher):
    message = EmailMessage()
    message["From"], message["To"], message["Subject"] = "a@example.com", "b@example.com", "hi"
    message.set_content("hello")
    deliver(catcher, message, ["b@example.com"])
    mail = catcher.wait_for(timeout=5)
    assert (mail.text, mail.html, mail.attachments, mail.bcc) == ("hello\n", None, [], [])


def test_wait_for_blocks_until_a_matching_mail_arrives(catcher):
    message = invoice_mail()
    threading.Timer(0.1, deliver, (catcher, message, ["alice@example.com"])).start()
    mail = catcher.wait_for(lambda m: "alice@example.com" in m.to, timeout=5)
    assert mail.subject.startswith("Invoice")


def test_wait_for_times_out_when_nothing_matches(catcher):
    deliver(catcher, invoice_mail(), ["alice@example.com"])
    with pytest.raises(TimeoutError):
        catcher.wait_for(lambda m: "bob@example.com" in m.recipients, timeout=0.2)


def test_clear_empties_the_inbox(catcher):
    deliver(catcher, invoice_mail(), ["alice@example.com"])
    catcher.wait_for(timeout=5)
    catcher.clear()
    assert catcher.messages == []


def test_http_view_lists_messages_bodies_and_attachments(catcher, http):
    deliver(catcher, invoice_mail(), ["alice@example.com", "archive@billing.example"])
    catcher.wait_for(timeout=5)
    [listed] = http.get(f"{catcher.http_url}/messages").json()["messages"]
    assert listed["subject"] == "Invoice INV-0001 — paid" and listed["bcc"] == ["archive@billing.example"]
    assert listed["attachments"][0]["size"] == len(PDF)
    assert http.get(listed["attachments"][0]["url"]).content == PDF
    page = http.get(f"{catcher.http_url}/messages/{listed['id']}/html")
    assert page.headers["Content-Type"].startswith("text/html") and "/manage/abc/" in page.text
    assert "Invoice INV-0001" in http.get(f"{catcher.http_url}/").text
    assert http.get(f"{catcher.http_url}/messages", params={"to": "nobody@example.com"}).json() == {"messages": []}
    assert http.get(f"{catcher.http_url}/messages/999").status_code == 404
    assert http.delete(f"{catcher.http_url}/messages").status_code == 200
    assert catcher.messages == []


def test_port_zero_binds_a_free_port():
    with MailCatcher(port=0) as first, MailCatcher(port=0) as second:
        assert first.port and second.port and first.port != second.port
        assert first.url == f"smtp://127.0.0.1:{first.port}" and first.http_url is None


def test_django_smtp_backend_mail_is_captured(catcher):
    """What the console sends (Django's SMTP backend, BCC and a PDF) arrives parsed."""
    connection = django_mail.get_connection("django.core.mail.backends.smtp.EmailBackend",
                                            host=catcher.host, port=catcher.port, timeout=5)
    message = django_mail.EmailMultiAlternatives(
        "Your invoice", "Plain body", "billing@example.com", ["alice@example.com"],
        bcc=["archive@billing.example"], connection=connection)
    message.attach_alternative("<p>HTML body</p>", "text/html")
    message.attach("INV-0001.pdf", PDF, "application/pdf")
    assert message.send() == 1
    mail = catcher.wait_for(timeout=5)
    assert mail.to == ["alice@example.com"] and mail.bcc == ["archive@billing.example"]
    assert (mail.text, mail.html) == ("Plain body", "<p>HTML body</p>")
    assert [(a.filename, a.data) for a in mail.attachments] == [("INV-0001.pdf", PDF)]
