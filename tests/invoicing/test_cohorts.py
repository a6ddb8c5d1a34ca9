"""Cohort migration (reference 002): the full-cycle gate, the per-cohort invoice-email switch (rollback),
per-account review sign-off, and the pre-cohort checklist."""
from datetime import timedelta

import pytest
from django.core import mail
from django.urls import reverse
from django.utils import timezone

from billing_console.errors import ServiceError
from billing_console.invoicing.cohorts import (cohort_account_sign_off, cohort_checklist, cohort_gate, cohort_save,
                                               cohort_set_invoice_emails)
from billing_console.invoicing.services import invoice_deliver
from billing_console.models import AuditEvent, Cohort, CohortAccountReview, Invoice, ReconciliationRun, WebhookEvent
from tests.invoicing.factories import CustomerFactory, InvoiceFactory, LedgerEntryFactory, stripe_event, stripe_invoice

pytestmark = pytest.mark.django_db
NOW = timezone.now()


def full_run(cohort="cohort-1", drift=0, at=None, full=True, status="clean"):
    run = ReconciliationRun.objects.create(status=status, checked={
        "full": full, "cohorts": {cohort: 2}, "cohort_drift": {cohort: drift}})
    if at is not None:
        ReconciliationRun.objects.filter(pk=run.pk).update(started_at=at)
        run.refresh_from_db()
    return run


@pytest.fixture
def cohort():
    return Cohort.objects.create(name="cohort-1", started_at=NOW - timedelta(days=35))


@pytest.fixture
def accounts(cohort):
    return [CustomerFactory(email=f"{n}@legacy.example.com", cohort="cohort-1", stripe_customer_id=f"cus_{n}",
                            subscription_id=f"sub_{n}", subscription_status="active", price_id="price_flat")
            for n in ("ann", "ben")]


def invoice_for(customer, days_ago=3, status="paid"):
    return InvoiceFactory(customer=customer, stripe_customer_id=customer.stripe_customer_id, status=status,
                          stripe_created=NOW - timedelta(days=days_ago))


def gate():
    (row,) = cohort_gate()
    return row


# --- The gate: a full billing cycle ---------------------------------------------------------------
def test_gate_waits_for_every_account_to_be_invoiced_since_the_start(accounts):
    invoice_for(accounts[0])
    invoice_for(accounts[1], days_ago=60)  # before the cohort started: does not count
    full_run()
    row = gate()
    assert not row["clean"] and row["invoiced"] == 1 and row["waiting"] == ["ben@legacy.example.com"]
    assert "1 account without an invoice finalized since the start" in row["reason"]


def test_gate_needs_a_full_run_after_the_last_invoice_and_opens_when_it_is_clean(accounts):
    full_run(at=NOW - timedelta(days=10))  # ran before the invoices existed
    for a in accounts:
        invoice_for(a)
    row = gate()
    assert not row["clean"] and "No full reconciliation has run since the last of these invoices" in row["reason"]
    full_run(full=False)  # a one-customer run does not count
    assert not gate()["clean"]
    run = full_run()
    row = gate()
    assert row["clean"] and row["run"] == run and row["drift"] == 0 and row["runs"] == 2


def test_drift_anywhere_in_the_cycle_keeps_the_gate_closed_even_if_the_last_run_is_clean(accounts):
    for a in accounts:
        invoice_for(a)
    full_run(drift=1, status="drift", at=NOW - timedelta(days=5))
    full_run(at=NOW - timedelta(days=60), drift=3, status="drift")  # before the start: not this cycle
    full_run()
    row = gate()
    assert not row["clean"] and row["drift"] == 1 and "found 1 drift item" in row["reason"]


def test_a_cohort_without_a_start_has_a_closed_gate():
    CustomerFactory(cohort="cohort-x")
    row = gate()
    assert row["cohort"] == "cohort-x" and not row["clean"] and "No start date" in row["reason"]


# --- Per-account review ---------------------------------------------------------------------------
def test_reviewed_cohort_needs_every_sign_off_recorded_with_who_and_when(accounts, cohort):
    cohort.requires_account_review = True
    cohort.save()
    for a in accounts:
        invoice_for(a)
    full_run()
    assert not gate()["clean"] and gate()["reviewed"] == 0
    review = cohort_account_sign_off(customer=accounts[0], actor_type="admin", actor="jeffrey")
    assert (review.signed_off_by, review.cohort) == ("jeffrey", "cohort-1") and review.signed_off_at
    again = cohort_account_sign_off(customer=accounts[0], actor_type="admin", actor="patrick")
    assert again.signed_off_by == "jeffrey" and CohortAccountReview.objects.count() == 1
    cohort_account_sign_off(customer=accounts[1], actor_type="admin", actor="patrick")
    assert gate()["clean"]
    assert AuditEvent.objects.filter(action="cohort.account_signed_off").count() == 2


def test_sign_off_is_refused_outside_a_reviewed_cohort(accounts):
    with pytest.raises(ServiceError, match="does not ask for a per-account review"):
        cohort_account_sign_off(customer=accounts[0], actor_type="admin", actor="sam")
    with pytest.raises(ServiceError, match="in no migration cohort"):
        cohort_account_sign_off(customer=CustomerFactory(), actor_type="admin", actor="sam")
    assert not CohortAccountReview.objects.exists() and not AuditEvent.objects.exists()


def test_cohort_save_refuses_a_blank_name_or_start():
    with pytest.raises(ServiceError):
        cohort_save(cohort=Cohort(name=" ", started_at=NOW), changed=["name"], actor_type="admin", actor="sam")
    with pytest.raises(ServiceError):
        cohort_save(cohort=Cohort(name="cohort-2"), changed=["name"], actor_type="admin", actor="sam")
    assert not Cohort.objects.exists()


# --- The invoice-email switch (rollback) ----------------------------------------------------------
def test_a_cohort_sent_back_to_legacy_gets_no_invoice_email_from_the_console(
        accounts, cohort, deliver_events, invoice_settings):
    cohort_set_invoice_emails(cohort=cohort, enabled=False, actor_type="admin", actor="jeffrey")
    obj = stripe_invoice(collection_method="send_invoice", customer="cus_ann", subscription="sub_ann", status="open")
    deliver_events(stripe_event("invoice.finalized", obj))
    invoice = Invoice.objects.get(stripe_id=obj["id"])
    assert invoice.delivery_status == "legacy" and mail.outbox == []
    assert invoice.events.filter(kind="delivery_skipped", data__reason="cohort_on_legacy").exists()
    deliver_events(stripe_event("invoice.paid", {**obj, "status": "paid"}))
    assert mail.outbox == []

    cohort_set_invoice_emails(cohort=cohort, enabled=True, actor_type="admin", actor="jeffrey")
    other = stripe_invoice(collection_method="send_invoice", customer="cus_ben", subscription="sub_ben", status="open")
    deliver_events(stripe_event("invoice.finalized", other))
    assert len(mail.outbox) == 1 and mail.outbox[0].to == ["ben@legacy.example.com"]
    assert list(AuditEvent.objects.order_by("at").values_list("action", flat=True)) == [
        "cohort.invoice_emails_off", "cohort.invoice_emails_on"]


def test_switching_back_after_the_invoice_was_queued_still_stops_the_email(accounts, cohort, invoice_settings):
    invoice = invoice_for(accounts[0])
    Invoice.objects.filter(pk=invoice.pk).update(next_delivery_at=NOW, data=stripe_invoice(customer="cus_ann"))
    cohort_set_invoice_emails(cohort=cohort, enabled=False, actor_type="admin", actor="jeffrey")
    assert invoice_deliver(invoice_id=invoice.pk).delivery_status == "legacy" and mail.outbox == []


def test_customers_outside_any_cohort_are_emailed_as_always(deliver_events, invoice_settings):
    CustomerFactory(email="plain@example.com", stripe_customer_id="cus_plain")
    deliver_events(stripe_event("invoice.finalized", stripe_invoice(collection_method="send_invoice", customer="cus_plain", subscription=None)))
    assert len(mail.outbox) == 1


# --- The pre-cohort checklist ---------------------------------------------------------------------
def state(items, start):
    return next(i for i in items if i["label"].startswith(start))


def _price(amount):
    from djstripe.models import Price, Product

    product = Product.objects.create(id="prod_flat", stripe_data={"id": "prod_flat", "name": "Flat"})
    return Price.objects.create(id="price_flat", product=product, currency="usd", active=True, stripe_data={
        "id": "price_flat", "unit_amount": amount, "currency": "usd", "recurring": {"interval": "month"}})


def test_checklist_states_are_computed_from_the_console(accounts, cohort, settings):
    settings.BILLING_BCC_ADDRESS = ""
    items = cohort_checklist(cohort)
    assert state(items, "Stripe subscription")["state"] == "ok"
    assert state(items, "Flat price")["state"] == "unknown"
    assert state(items, "Test-mode invoice.finalized")["state"] == "fail"
    assert state(items, "A test PDF")["state"] == "fail"
    assert state(items, "Invoice email BCC")["state"] == "fail"
    assert state(items, "Metered prices")["state"] == "manual"

    settings.BILLING_BCC_ADDRESS = "books@bcc.example.com"
    _price(1234)
    LedgerEntryFactory(account="cus_ann", period="2026-01", total=999)
    LedgerEntryFactory(account="cus_ann", period="2026-02", total=1234)  # the latest rate
    LedgerEntryFactory(account="cus_ben", period="2026-02", total=1500)
    WebhookEvent.objects.create(stripe_id="evt_t", type="invoice.finalized", livemode=False, stripe_created=NOW,
                                payload={}, status="processed")
    invoice = invoice_for(accounts[0])
    invoice.events.create(kind="pdf_rendered", data={})
    items = cohort_checklist(cohort)
    price = state(items, "Flat price")
    assert price["state"] == "fail" and "ben@legacy.example.com (Stripe 1234 usd, ledger 1500 usd)" in price["detail"]
    assert "ann@" not in price["detail"]
    assert state(items, "Test-mode invoice.finalized")["state"] == "ok"
    assert state(items, "A test PDF")["state"] == "ok"
    assert state(items, "Invoice email BCC")["state"] == "ok"


# --- Admin ----------------------------------------------------------------------------------------
def test_admin_cohorts_checklist_switch_and_sign_off(admin_client, accounts, cohort):
    page = admin_client.get(reverse("admin:billing_console_cohort_changelist")).content.decode()
    assert "cohort-1" in page and "one full billing cycle" in page
    checklist = admin_client.get(reverse("admin:billing_console_cohort_checklist", args=[cohort.pk]))
    assert checklist.status_code == 200 and "Flat price matches the legacy ledger rate" in checklist.content.decode()

    url = reverse("admin:billing_console_cohort_changelist")
    response = admin_client.post(url, {"action": "emails_off", "_selected_action": [cohort.pk]}, follow=True)
    assert "1 cohort sent back to the legacy system" in response.content.decode()
    cohort.refresh_from_db()
    assert not cohort.console_emails_invoices

    added = admin_client.post(reverse("admin:billing_console_cohort_add"), {
        "name": "cohort-3", "started_at_0": "2026-03-01", "started_at_1": "00:00:00", "requires_account_review": "on"})
    assert added.status_code == 302
    assert AuditEvent.objects.get(action="cohort.created").data["requires_account_review"] is True
    customer = CustomerFactory(email="custom@legacy.example.com", cohort="cohort-3")
    response = admin_client.post(reverse("admin:billing_console_customer_changelist"), {
        "action": "sign_off_cohort_review", "_selected_action": [customer.pk, accounts[0].pk]}, follow=True)
    text = response.content.decode()
    assert "1 account signed off for their cohort" in text and "does not ask for a per-account review" in text
    assert CohortAccountReview.objects.get().signed_off_by == "admin"
    page = admin_client.get(reverse("admin:billing_console_customer_change", args=[customer.pk])).content.decode()
    assert "Cohort review sign-off" in page
