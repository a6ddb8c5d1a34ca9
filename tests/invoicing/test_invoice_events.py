import pytest
from django.core import mail

from billing_console.invoicing.services import InvoiceShapeError, invoice_apply_event
from billing_console.models import Invoice, InvoiceEvent
from billing_console.stripe.dispatch import dispatch
from tests.invoicing.factories import CustomerFactory, stripe_event, stripe_invoice

pytestmark = pytest.mark.django_db


def test_finalized_event_stores_amounts_in_minor_units_and_links_the_customer(deliver_events, invoice_settings):
    customer = CustomerFactory(email="ann@example.com", stripe_customer_id="cus_ann", subscription_id="sub_ann")
    obj = stripe_invoice(customer="cus_ann", subscription="sub_ann", lines=[("Pro", 2000)], tax=380, number="ANN-0001")
    deliver_events(stripe_event("invoice.finalized", obj))

    invoice = Invoice.objects.get(stripe_id=obj["id"])
    assert (invoice.subtotal, invoice.tax, invoice.total, invoice.amount_due, invoice.amount_paid) == (2000, 380, 2380, 2380, 0)
    assert invoice.currency == "usd" and invoice.number == "ANN-0001" and invoice.status == "open"
    assert invoice.subscription_id == "sub_ann" and invoice.customer == customer
    assert invoice.hosted_invoice_url.endswith(obj["id"]) and invoice.period_start and invoice.period_end
    assert invoice.events.filter(kind="webhook_received").get().data["event_type"] == "invoice.finalized"


def test_customer_is_found_by_subscription_when_the_stripe_customer_id_is_unknown(deliver_events):
    customer = CustomerFactory(subscription_id="sub_only")
    obj = stripe_invoice(customer="cus_unknown", subscription="sub_only", status="draft")
    deliver_events(stripe_event("invoice.created", obj))
    assert Invoice.objects.get(stripe_id=obj["id"]).customer == customer


def test_older_tax_field_is_read_when_total_taxes_is_absent(deliver_events):
    obj = stripe_invoice(status="draft")
    del obj["total_taxes"]
    obj["tax"] = 99
    deliver_events(stripe_event("invoice.created", obj))
    assert Invoice.objects.get(stripe_id=obj["id"]).tax == 99


def test_a_late_event_never_moves_a_paid_invoice_back_to_open(deliver_events, invoice_settings):
    obj = stripe_invoice(status="open", customer_email="late@example.com")
    paid = {**obj, "status": "paid", "amount_paid": obj["total"]}
    deliver_events(stripe_event("invoice.paid", paid, created=2_000_000_100))
    deliver_events(stripe_event("invoice.finalized", obj, created=2_000_000_000))  # delivered late

    invoice = Invoice.objects.get(stripe_id=obj["id"])
    assert invoice.status == "paid" and invoice.amount_paid == obj["total"]
    received = list(invoice.events.filter(kind="webhook_received").order_by("at", "pk").values_list("data", flat=True))
    assert [r["applied"] for r in received] == [True, False]
    # The late finalized event still triggers the (single) delivery of the paid invoice.
    assert len(mail.outbox) == 1


def test_newer_event_of_the_same_rank_wins_and_an_older_one_is_ignored(deliver_events):
    obj = stripe_invoice(status="open", amount_paid=0)
    deliver_events(stripe_event("invoice.payment_failed", {**obj, "amount_due": 1234}, created=2_000_000_200))
    deliver_events(stripe_event("invoice.updated", {**obj, "amount_due": 999}, created=2_000_000_100))
    assert Invoice.objects.get(stripe_id=obj["id"]).amount_due == 1234


def test_voided_invoice_is_recorded_as_void(deliver_events):
    obj = stripe_invoice(status="open")
    deliver_events(stripe_event("invoice.created", {**obj, "status": "draft"}, created=2_000_000_000),
                   stripe_event("invoice.voided", {**obj, "status": "void"}, created=2_000_000_050))
    assert Invoice.objects.get(stripe_id=obj["id"]).status == "void"


@pytest.mark.parametrize("mutate, message", [
    (lambda o: o.update(object="customer"), "not an invoice"),
    (lambda o: o.update(total="12.34"), "minor units"),
    (lambda o: o.update(currency="dollars"), "currency"),
    (lambda o: o.update(customer=None), "no customer"),
    (lambda o: o.update(status="weird"), "unknown status"),
])
def test_malformed_invoice_is_refused_and_writes_nothing(mutate, message):
    obj = stripe_invoice()
    mutate(obj)
    with pytest.raises(InvoiceShapeError, match=message):
        invoice_apply_event(event=stripe_event("invoice.finalized", obj))
    assert not Invoice.objects.exists() and not InvoiceEvent.objects.exists()


def test_malformed_invoice_event_is_skipped_and_logged_without_failing_other_receivers(caplog):
    obj = stripe_invoice()
    obj["total"] = "12.34"
    dispatch(stripe_event("invoice.payment_failed", obj))  # does not raise: dunning's receiver still runs
    assert not Invoice.objects.exists()
    assert [r.event_type for r in caplog.records if getattr(r, "event", "") == "invoice_event_skipped"] == ["invoice.payment_failed"]


def test_event_without_created_time_is_refused():
    evt = stripe_event("invoice.created", stripe_invoice(status="draft"))
    del evt["created"]
    with pytest.raises(InvoiceShapeError):
        invoice_apply_event(event=evt)
    assert not Invoice.objects.exists()
