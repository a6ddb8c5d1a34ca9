"""Invoices and reconciliation end to end against the Stripe emulator: its signed invoice events go
through the webhook view and the worker to the invoice receivers, and reconciliation reads Stripe
through the real gateway (paginated list calls over HTTP)."""
import io

import pytest
from django.core import mail
from django.core.files.storage import default_storage
from pypdf import PdfReader

from billing_console.errors import ServiceError
from billing_console.invoicing.reconciliation import drift_item_resync, reconcile_scope, reconciliation_run
from billing_console.models import AuditEvent, Customer, DriftItem, Invoice
from tests.stripe.conftest import deliver, emulator, post_event, stripe_settings  # noqa: F401  fixtures
from tests.stripe.test_checkout_flow import start_checkout

pytestmark = pytest.mark.django_db


@pytest.fixture
def paid_customer(client, emulator, deliver, invoice_settings):  # noqa: F811
    attempt, _ = start_checkout(client, email="ivy@example.com")
    result = emulator.pay_checkout(attempt.stripe_session_id, card="4242 4242 4242 4242", name="Ivy Invoice")
    assert result["ok"], result
    deliver(emulator.events)
    return Customer.objects.get(email="ivy@example.com")


def invoice_mails():
    return [m for m in mail.outbox if m.attachments and m.attachments[0][0].endswith(".pdf")]


def test_first_and_renewal_invoices_are_delivered_once_each(paid_customer, emulator, deliver):  # noqa: F811
    (first,) = Invoice.objects.filter(customer=paid_customer)
    stripe_first = emulator.get(first.stripe_id)
    assert (first.status, first.total, first.number) == ("paid", stripe_first["total"], stripe_first["number"])
    (message,) = invoice_mails()
    assert message.to == ["ivy@example.com"] and message.bcc == ["books@bcc.example.com"]
    with default_storage.open(first.pdf_path, "rb") as fh:
        text = PdfReader(io.BytesIO(fh.read())).pages[0].extract_text()
    assert stripe_first["number"] in text and "$" in text

    mark = len(emulator.events)
    emulator.advance(days=32)  # renewal: a new invoice is created, finalized and paid
    deliver(emulator.events[mark:])
    deliver(emulator.events[mark:])  # Stripe delivers again: nothing is emailed twice
    assert Invoice.objects.filter(customer=paid_customer, status="paid").count() == 2
    assert len(invoice_mails()) == 2


def test_reconciliation_through_the_gateway_is_clean_then_finds_and_resyncs_drift(paid_customer, emulator):  # noqa: F811
    run = reconciliation_run(triggered_by="test")
    assert run.status == "clean", list(run.items.values_list("kind", "stripe_id", "expected", "actual"))
    assert run.checked["invoices"] == 1 and run.checked["subscriptions"] == 1

    invoice = Invoice.objects.get(customer=paid_customer)
    Invoice.objects.filter(pk=invoice.pk).update(total=1, status="open")  # the console drifted
    run = reconciliation_run(scope=reconcile_scope(customer="ivy@example.com"), triggered_by="test")
    assert run.status == "drift"
    assert set(run.items.values_list("kind", flat=True)) == {"invoice_total", "invoice_status"}

    for item in run.items.all():
        drift_item_resync(item=item, actor_type="admin", actor="support1")
    invoice.refresh_from_db()
    assert (invoice.total, invoice.status) == (emulator.get(invoice.stripe_id)["total"], "paid")
    assert set(DriftItem.objects.filter(run=run).values_list("resolution", flat=True)) == {"resynced"}
    assert AuditEvent.objects.filter(action="drift_item.resynced").count() == 2
    assert AuditEvent.objects.filter(action="customer.resynced", customer=paid_customer).exists()
    assert reconciliation_run(triggered_by="test").status == "clean"


def test_resync_of_a_ledger_difference_is_refused(paid_customer):
    run = reconciliation_run(triggered_by="test")
    item = DriftItem.objects.create(run=run, kind="ledger_total", customer=paid_customer, stripe_id="cus_x 2026-01")
    with pytest.raises(ServiceError, match="re-import the ledger"):
        drift_item_resync(item=item, actor_type="admin", actor="support1")
    item.refresh_from_db()
    assert item.resolution == "open" and not AuditEvent.objects.filter(action="drift_item.resynced").exists()


def test_stripe_unreachable_fails_the_run_visibly(paid_customer, emulator, settings):  # noqa: F811
    emulator.set_faults(api_500=100)
    run = reconciliation_run(triggered_by="test")
    assert run.status == "failed" and "Stripe" in run.error and settings.STRIPE_SECRET_KEY not in run.error
