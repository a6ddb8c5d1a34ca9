import pytest
from django.contrib.auth.models import Permission, User
from django.core import mail
from django.core.files.base import ContentFile
from django.core.files.storage import default_storage
from django.urls import reverse

from billing_console.models import AuditEvent, Customer, DriftItem, Invoice, LedgerEntry, ReconciliationRun
from tests.invoicing.factories import CustomerFactory, InvoiceFactory, LedgerEntryFactory, stripe_invoice

pytestmark = pytest.mark.django_db


@pytest.fixture
def viewer(client):
    """Staff who may only look."""
    user = User.objects.create_user("viewer", password="pw", is_staff=True)
    user.user_permissions.set(Permission.objects.filter(codename__in=[
        "view_invoice", "view_reconciliationrun", "view_driftitem", "view_ledgerentry"]))
    client.force_login(user)
    return client


def drift_item(**kwargs):
    run = ReconciliationRun.objects.create(status="drift", drift_count=1)
    return DriftItem.objects.create(run=run, kind="invoice_total", stripe_id="in_1", expected="2000", actual="1234",
                                    delta=766, currency="usd", **kwargs)


@pytest.mark.parametrize("model", ["invoice", "invoiceevent", "reconciliationrun", "driftitem", "ledgerentry"])
def test_changelists_render(admin_client, model):
    CustomerFactory(cohort="cohort-1", stripe_customer_id="cus_1")
    invoice = InvoiceFactory(customer=Customer.objects.get())
    invoice.events.create(kind="webhook_received")
    drift_item()
    LedgerEntryFactory()
    response = admin_client.get(reverse(f"admin:billing_console_{model}_changelist"))
    assert response.status_code == 200


def test_invoice_page_and_customer_page_show_invoices(admin_client):
    customer = CustomerFactory()
    invoice = InvoiceFactory(customer=customer, number="INV-9", currency="jpy", total=1000)
    assert "¥1,000" in admin_client.get(reverse("admin:billing_console_invoice_change", args=[invoice.pk])).content.decode()
    page = admin_client.get(reverse("admin:billing_console_customer_change", args=[customer.pk])).content.decode()
    assert "INV-9" in page and "¥1,000" in page


def test_resend_action_queues_an_audited_resend(admin_client, django_capture_on_commit_callbacks):
    customer = CustomerFactory(email="dan@example.com", stripe_customer_id="cus_dan")
    invoice = InvoiceFactory(customer=customer, stripe_customer_id="cus_dan", delivery_status="failed",
                             data=stripe_invoice(customer="cus_dan"))
    draft = InvoiceFactory(status="draft")
    with django_capture_on_commit_callbacks(execute=True):
        response = admin_client.post(reverse("admin:billing_console_invoice_changelist"), {
            "action": "resend_invoice", "_selected_action": [invoice.pk, draft.pk]}, follow=True)
    text = response.content.decode()
    assert "1 invoice queued for resending" in text and "not finalized" in text
    invoice.refresh_from_db()
    assert invoice.delivery_status == "sent" and len(mail.outbox) == 1 and mail.outbox[0].to == ["dan@example.com"]
    assert AuditEvent.objects.get(action="invoice.resend_requested").actor == "admin"


def test_viewer_cannot_resend(viewer):
    invoice = InvoiceFactory()
    response = viewer.post(reverse("admin:billing_console_invoice_changelist"),
                           {"action": "resend_invoice", "_selected_action": [invoice.pk]})
    assert response.status_code in (200, 302) and not AuditEvent.objects.exists()


def test_pdf_download(admin_client, viewer):
    invoice = InvoiceFactory(number="INV-1")
    assert admin_client.get(reverse("admin:billing_console_invoice_pdf", args=[invoice.pk])).status_code == 404
    invoice.pdf_path = default_storage.save("invoices/cus_test/in_1.pdf", ContentFile(b"%PDF-1.7 test"))
    invoice.save()
    response = viewer.get(reverse("admin:billing_console_invoice_pdf", args=[invoice.pk]))
    assert response.status_code == 200 and response["Content-Type"] == "application/pdf"
    assert b"".join(response.streaming_content) == b"%PDF-1.7 test"


def test_run_button_starts_a_reconciliation(admin_client, monkeypatch):
    calls = []
    monkeypatch.setattr("billing_console.invoicing.reconciliation.default_stripe_view", lambda: calls.append(1) or _Empty())
    page = admin_client.get(reverse("admin:billing_console_reconciliationrun_changelist")).content.decode()
    assert "Run reconciliation now" in page
    assert admin_client.get(reverse("admin:billing_console_reconciliationrun_run")).status_code == 405
    response = admin_client.post(reverse("admin:billing_console_reconciliationrun_run"))
    assert response.status_code == 302 and calls == [1]
    run = ReconciliationRun.objects.get()
    assert run.status == "clean" and run.triggered_by == "admin:admin"


class _Empty:
    def invoices(self, **kwargs):
        return iter(())

    def subscriptions(self, **kwargs):
        return iter(())


def test_viewer_cannot_run_a_reconciliation(viewer):
    assert "Run reconciliation now" not in viewer.get(reverse("admin:billing_console_reconciliationrun_changelist")).content.decode()
    assert viewer.post(reverse("admin:billing_console_reconciliationrun_run")).status_code == 403
    assert not ReconciliationRun.objects.exists()


def test_cohort_gate_is_shown(admin_client):
    from datetime import timedelta

    from django.utils import timezone

    from billing_console.models import Cohort

    Cohort.objects.create(name="cohort-1", started_at=timezone.now() - timedelta(days=40))
    customer = CustomerFactory(cohort="cohort-1", stripe_customer_id="cus_1")
    InvoiceFactory(customer=customer, status="paid", stripe_created=timezone.now() - timedelta(days=3))
    ReconciliationRun.objects.create(status="clean", checked={"full": True, "cohorts": {"cohort-1": 1},
                                                              "cohort_drift": {"cohort-1": 0}})
    for model in ("reconciliationrun", "ledgerentry"):
        page = admin_client.get(reverse(f"admin:billing_console_{model}_changelist")).content.decode()
        assert "cohort-1" in page and "Drift-free" in page


def test_mark_explained_asks_for_a_note_then_resolves_and_audits(admin_client):
    item = drift_item()
    url = reverse("admin:billing_console_driftitem_changelist")
    form = admin_client.post(url, {"action": "mark_explained", "_selected_action": [item.pk]})
    assert form.status_code == 200 and "Mark explained" in form.content.decode()
    empty = admin_client.post(url, {"action": "mark_explained", "_selected_action": [item.pk], "apply": "1", "note": "  "})
    assert empty.status_code == 200 and "This field is required" in empty.content.decode()
    item.refresh_from_db()
    assert item.resolution == "open"

    admin_client.post(url, {"action": "mark_explained", "_selected_action": [item.pk], "apply": "1",
                            "note": "Refund issued by hand in Stripe."})
    item.refresh_from_db()
    assert item.resolution == "explained" and item.note == "Refund issued by hand in Stripe." and item.resolved_by == "admin"
    assert AuditEvent.objects.get(action="drift_item.explained").data["note"] == "Refund issued by hand in Stripe."


def test_ledger_import_form(admin_client):
    url = reverse("admin:billing_console_ledgerentry_import")
    assert admin_client.get(url).status_code == 200
    bad = ContentFile(b"account,period,total,currency\ncus_a,2026-01,10.50,usd\n", name="bad.csv")
    response = admin_client.post(url, {"file": bad})
    assert response.status_code == 400 and "line 2:" in response.content.decode() and not LedgerEntry.objects.exists()
    good = ContentFile(b"account,period,total,currency\ncus_a,2026-01,1050,usd\n", name="good.csv")
    response = admin_client.post(url, {"file": good}, follow=True)
    assert "Imported 1 row from" in response.content.decode()
    assert LedgerEntry.objects.get().source == "good.csv"
    assert AuditEvent.objects.get(action="ledger.imported").actor == "admin"


def test_ledger_import_without_a_file_is_a_form_error(admin_client):
    response = admin_client.post(reverse("admin:billing_console_ledgerentry_import"), {})
    assert response.status_code == 400 and "This field is required" in response.content.decode()


def test_viewer_cannot_import(viewer):
    assert viewer.get(reverse("admin:billing_console_ledgerentry_import")).status_code == 403


def test_dashboard_shows_invoice_delivery(admin_client):
    InvoiceFactory(delivery_status="failed")
    InvoiceFactory(delivery_status="rendered", delivery_attempts=2)
    page = admin_client.get(reverse("admin:index")).content.decode()
    assert "Invoices" in page and "Delivery failed" in page and "delivery_status__exact=failed" in page
    retrying = reverse("admin:billing_console_invoice_changelist") + "?delivery_attempts__gt=0&delivery_status__in=pending,rendered"
    response = admin_client.get(retrying)
    assert response.status_code == 200
    assert response.context["cl"].result_count == 1
