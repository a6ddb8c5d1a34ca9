"""import_invoices_from_stripe against the Stripe emulator: every invoice and its PDF comes back, page by
page, resuming after a failure, never twice, never emailed."""
import pytest
from django.core import mail
from django.core.files.storage import default_storage
from django.core.management import CommandError, call_command

from billing_console.errors import ServiceError
from billing_console.invoicing.history import invoices_import
from billing_console.models import AuditEvent, CronRun, Invoice, StripeImportCursor
from billing_console.stripe import gateway
from tests.invoicing.test_sandbox_flow import paid_customer  # noqa: F401  fixture
from tests.stripe.conftest import deliver, emulator, post_event, stripe_settings  # noqa: F401  fixtures

pytestmark = pytest.mark.django_db


@pytest.fixture
def history(paid_customer, emulator):  # noqa: F811
    """Four paid invoices at Stripe (checkout and three renewals) the console lost."""
    emulator.advance(days=32)
    emulator.advance(days=31)
    emulator.advance(days=31)
    stripe_ids = [i["id"] for i in emulator.store.newest_first("invoice")]
    assert len(stripe_ids) == 4
    Invoice.objects.all().delete()
    mail.outbox.clear()
    return stripe_ids


def test_backfill_imports_every_invoice_with_its_pdf_once_and_emails_nobody(history, emulator, capsys):  # noqa: F811
    call_command("import_invoices_from_stripe", "--page-size", "3")
    assert "4 imported, 0 already here, 4 PDFs stored" in capsys.readouterr().out
    assert sorted(Invoice.objects.values_list("stripe_id", flat=True)) == sorted(history)
    for invoice in Invoice.objects.all():
        stripe_obj = emulator.get(invoice.stripe_id)
        assert (invoice.status, invoice.total, invoice.customer.email) == ("paid", stripe_obj["total"], "ivy@example.com")
        assert invoice.delivery_status == "rendered" and default_storage.exists(invoice.pdf_path)
        assert invoice.events.filter(kind="imported").exists()
    assert mail.outbox == []
    audit = AuditEvent.objects.get(action="invoices.imported")
    assert (audit.data["imported"], audit.data["pages"], audit.data["finished"]) == (4, 2, True)

    call_command("import_invoices_from_stripe")  # again: no second copy, nothing re-rendered
    assert "0 imported, 4 already here, 0 PDFs stored" in capsys.readouterr().out
    assert Invoice.objects.count() == 4 and mail.outbox == []


def test_a_failed_run_resumes_after_the_last_page_done(history, monkeypatch):  # noqa: F811
    real = gateway.list_page
    calls = []

    def flaky(resource, params):
        calls.append(dict(params))
        if len(calls) == 3:
            raise gateway.StripeGatewayError("Stripe could not be reached to list invoices", code="network")
        return real(resource, params)

    monkeypatch.setattr(gateway, "list_page", flaky)
    with pytest.raises(ServiceError):
        invoices_import(actor_type="system", actor="test", page_size=1)
    assert Invoice.objects.count() == 2
    cursor = StripeImportCursor.objects.get()
    assert cursor.starting_after == history[1] and cursor.finished_at is None
    assert CronRun.objects.get(name="import_invoices_from_stripe").status == "errors"

    result = invoices_import(actor_type="system", actor="test", page_size=1)
    assert calls[3].get("starting_after") == history[1]  # resumed, not from the top
    assert result["finished"] and result["imported"] == 4 and result["existing"] == 0
    assert Invoice.objects.count() == 4


def test_since_limits_the_backfill(history, emulator):  # noqa: F811
    from datetime import datetime, timezone as dt_timezone

    newest = emulator.get(history[0])
    since = datetime.fromtimestamp(newest["created"], tz=dt_timezone.utc).date()
    result = invoices_import(since=since, actor_type="system", actor="test")
    assert result["imported"] == 1 and list(Invoice.objects.values_list("stripe_id", flat=True)) == [history[0]]


@pytest.mark.parametrize("args, message", [
    (["--since", "yesterday"], "--since must be a date"),
    (["--since", "2999-01-01"], "in the future"),
    (["--page-size", "0"], "between 1 and 100"),
])
def test_bad_input_is_refused_before_stripe_is_read(args, message, emulator):  # noqa: F811
    calls = len(emulator.requests)
    with pytest.raises(CommandError, match=message):
        call_command("import_invoices_from_stripe", *args)
    assert len(emulator.requests) == calls and not StripeImportCursor.objects.exists()
    assert not AuditEvent.objects.exists()


def test_a_pdf_that_failed_is_rendered_by_the_next_run_and_delivered_invoices_are_left_alone(
        history, monkeypatch, capsys):  # noqa: F811
    import billing_console.invoicing.services as invoicing

    real = invoicing.invoice_render_pdf

    def broken(invoice):
        raise RuntimeError("renderer crashed")

    monkeypatch.setattr(invoicing, "invoice_render_pdf", broken)
    with pytest.raises(CommandError, match="Some PDFs could not be rendered"):
        call_command("import_invoices_from_stripe")
    assert Invoice.objects.filter(pdf_path="").count() == 4
    sent = Invoice.objects.get(stripe_id=history[0])
    Invoice.objects.filter(pk=sent.pk).update(delivery_status="legacy")  # e.g. a cohort's, left to legacy

    monkeypatch.setattr(invoicing, "invoice_render_pdf", real)
    call_command("import_invoices_from_stripe", "--restart")
    assert "0 imported, 4 already here, 3 PDFs stored" in capsys.readouterr().out
    sent.refresh_from_db()
    assert sent.delivery_status == "legacy" and not sent.pdf_path and mail.outbox == []
