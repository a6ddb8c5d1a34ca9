"""`sync_invoice` and the admin's "Sync from Stripe": the invoice is read from the Stripe emulator and
applied through the invoice-event code, including delivery of a finalized invoice never emailed."""
import pytest
from django.core.management import CommandError, call_command
from django.urls import reverse

from billing_console.errors import ServiceError
from billing_console.invoicing.services import invoice_resync
from billing_console.models import AuditEvent, Invoice
from tests.invoicing.test_sandbox_flow import invoice_mails, paid_customer  # noqa: F401  fixture
from tests.stripe.conftest import deliver, emulator, post_event, stripe_settings  # noqa: F401  fixtures

pytestmark = pytest.mark.django_db


@pytest.fixture
def lost_renewal(paid_customer, emulator):  # noqa: F811
    """A renewal invoice Stripe finalized and charged whose events never reached the console."""
    mark = len(emulator.events)
    emulator.advance(days=32)
    (event,) = [e for e in emulator.events[mark:] if e["type"] == "invoice.finalized"]
    stripe_id = event["data"]["object"]["id"]
    assert not Invoice.objects.filter(stripe_id=stripe_id).exists()
    return stripe_id


def test_sync_invoice_applies_status_amounts_and_emails_a_finalized_invoice_once(
        lost_renewal, emulator, django_capture_on_commit_callbacks, capsys):  # noqa: F811
    sent_before = len(invoice_mails())
    with django_capture_on_commit_callbacks(execute=True):
        call_command("sync_invoice", lost_renewal)
    invoice = Invoice.objects.get(stripe_id=lost_renewal)
    stripe_obj = emulator.get(lost_renewal)
    assert (invoice.status, invoice.total, invoice.amount_paid) == ("paid", stripe_obj["total"], stripe_obj["amount_paid"])
    assert invoice.delivery_status == "sent" and len(invoice_mails()) == sent_before + 1
    assert "1 synced, 0 failed" in capsys.readouterr().out
    audit = AuditEvent.objects.get(action="invoice.resynced", target_id=str(invoice.pk))
    assert audit.actor == "sync_invoice" and audit.data["delivery_queued"] is True

    with django_capture_on_commit_callbacks(execute=True):
        call_command("sync_invoice", lost_renewal)  # again: nothing is emailed twice
    assert len(invoice_mails()) == sent_before + 1
    assert Invoice.objects.filter(stripe_id=lost_renewal).count() == 1


def test_sync_of_an_emailed_invoice_corrects_it_without_emailing(paid_customer, django_capture_on_commit_callbacks):  # noqa: F811
    invoice = Invoice.objects.get(customer=paid_customer)
    Invoice.objects.filter(pk=invoice.pk).update(status="open", total=1)
    with django_capture_on_commit_callbacks(execute=True):
        invoice_resync(stripe_id=invoice.stripe_id, actor_type="admin", actor="sam")
    invoice.refresh_from_db()
    assert invoice.status == "paid" and invoice.total > 1 and len(invoice_mails()) == 1


@pytest.mark.parametrize("bad", ["", "cus_123", "in_ spaces", "in_" + "x" * 300])
def test_bad_invoice_ids_are_refused_before_stripe_is_called(bad, emulator):  # noqa: F811
    calls = len(emulator.requests)
    with pytest.raises(ServiceError, match="not a Stripe invoice id"):
        invoice_resync(stripe_id=bad, actor_type="admin", actor="sam")
    assert len(emulator.requests) == calls
    assert not AuditEvent.objects.filter(action="invoice.resynced").exists()


def test_command_reports_unknown_and_malformed_ids(emulator, capsys):  # noqa: F811
    with pytest.raises(CommandError):
        call_command("sync_invoice", "in_doesnotexist", "nope")
    err = capsys.readouterr().err
    assert "in_doesnotexist: Stripe has no such object" in err and "'nope' is not a Stripe invoice id" in err
    assert not Invoice.objects.exists() and not AuditEvent.objects.filter(action="invoice.resynced").exists()


def test_admin_action_on_the_invoice_list_and_on_the_customer_page(
        lost_renewal, paid_customer, admin_client, django_capture_on_commit_callbacks):  # noqa: F811
    sent_before = len(invoice_mails())
    invoice = Invoice.objects.get(customer=paid_customer)
    Invoice.objects.filter(pk=invoice.pk).update(total=1)
    with django_capture_on_commit_callbacks(execute=True):
        response = admin_client.post(reverse("admin:billing_console_invoice_changelist"), {
            "action": "sync_from_stripe", "_selected_action": [invoice.pk]}, follow=True)
    assert "1 invoice synced from Stripe" in response.content.decode()
    invoice.refresh_from_db()
    assert invoice.total > 1

    page = admin_client.get(reverse("admin:billing_console_customer_change", args=[paid_customer.pk])).content.decode()
    assert "sync_from_stripe" in page
    Invoice.objects.filter(pk=invoice.pk).update(status="open")
    url = reverse("console-customer-action", args=[paid_customer.pk, "billing_console", "invoice"])
    with django_capture_on_commit_callbacks(execute=True):
        response = admin_client.post(url, {"action": "sync_from_stripe", "_selected_action": [invoice.pk]}, follow=True)
    assert "1 invoice synced from Stripe" in response.content.decode()
    invoice.refresh_from_db()
    assert invoice.status == "paid" and len(invoice_mails()) == sent_before
    assert AuditEvent.objects.filter(action="invoice.resynced", actor="admin").count() == 2
