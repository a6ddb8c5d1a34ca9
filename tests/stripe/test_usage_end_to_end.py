"""Usage billing end to end against the Stripe emulator: a checkout with a metered tiered price, usage
through the API, report_usage, the renewal invoice's tiered usage line, reconciliation clean, then a
report recorded as sent that never reached Stripe flagged as drift."""
import json

import pytest
from django.core.management import call_command
from django.urls import reverse

from billing_console.errors import ServiceError
from billing_console.invoicing.reconciliation import drift_item_resync, reconciliation_run
from billing_console.invoicing.services import invoice_pdf_context
from billing_console.manage_links import manage_link_make
from billing_console.invoicing.usage import usage_events_ingest, usage_reports_claim
from billing_console.invoicing.usage_meters import usage_meter_ids, usage_meters_setup
from billing_console.invoicing.usage_selectors import customer_usage_summary
from billing_console.models import Customer, DriftItem, Invoice, UsageReport
from billing_console.stripe import gateway
from tests.stripe.test_checkout_flow import start_checkout

pytestmark = pytest.mark.django_db
SECRET = "usage-secret-0123456789"


@pytest.fixture
def metered_plan(emulator, stripe_settings):
    stripe_settings.USAGE_API_SECRET = SECRET
    stripe_settings.USAGE_METERS = {"api_calls": {"event_name": "api_calls", "formula": "sum",
                                                  "display_name": "API calls"}}
    usage_meters_setup()
    price = gateway.client().v1.prices.create(params={
        "currency": "usd", "product": "prod_sandbox_pro", "billing_scheme": "tiered", "tiers_mode": "graduated",
        "recurring": {"interval": "month", "usage_type": "metered", "meter": usage_meter_ids()["api_calls"]},
        "tiers": [{"up_to": 100, "unit_amount": 5}, {"up_to": "inf", "unit_amount": 2, "flat_amount": 100}],
    }).to_dict()
    plans = dict(stripe_settings.PLANS)
    plans["pro"] = {**plans["pro"], "usage_price_id": price["id"], "usage_meter": "api_calls"}
    stripe_settings.PLANS = plans
    return price


def post_usage(client, body):
    return client.post("/api/billing/usage", data=json.dumps(body), content_type="application/json",
                       HTTP_AUTHORIZATION=f"Bearer {SECRET}")


def test_usage_is_billed_on_the_renewal_at_its_tiers_and_reconciled(client, emulator, deliver, metered_plan, admin_client,
                                                                   admin_user):
    attempt, _ = start_checkout(client, email="meter@example.com")
    result = emulator.pay_checkout(attempt.stripe_session_id)
    assert result["ok"], result
    deliver(emulator.events)
    sub = emulator.get(result["subscription"])
    assert sorted(i["price"]["id"] for i in sub["items"]["data"]) == sorted(["price_sandbox_pro", metered_plan["id"]])
    customer = Customer.objects.get(email="meter@example.com")

    # 250 units through the API: a batch (one repeated key), then single events by Stripe id.
    batch = [{"customer": "meter@example.com", "meter": "api_calls", "quantity": 40, "idempotency_key": f"b{i}"}
             for i in range(5)]
    response = post_usage(client, {"events": batch + [batch[0]]})
    assert response.json() == {"accepted": 5, "duplicate": 1, "errors": []}
    for i in range(5):
        assert post_usage(client, {"customer": customer.stripe_customer_id, "meter": "api_calls", "quantity": "10",
                                   "idempotency_key": f"s{i}"}).status_code == 202
    summary = customer_usage_summary(customer)["meters"][0]
    # graduated: 100 x 5 + 150 x 2 + 100 flat = 900 cents
    assert (summary["quantity"], summary["estimate"], summary["currency"]) == (250, 900, "usd")

    # The customer and support see the same numbers.
    manage = client.get(manage_link_make(customer).replace("https://console.test", ""))
    assert manage.status_code == 200
    page = manage.content.decode()
    assert "Usage this period" in page and ">250<" in page and "$9.00" in page
    admin_client.force_login(admin_user)
    admin_page = admin_client.get(reverse("admin:billing_console_customer_change", args=[customer.pk])).content.decode()
    assert "<b>API calls</b>: 250 (10 events); estimate $9.00; 10 events not yet reported" in admin_page

    call_command("report_usage")
    assert set(UsageReport.objects.values_list("state", flat=True)) == {"sent"}
    assert sum(UsageReport.objects.values_list("quantity", flat=True)) == 250
    call_command("report_usage")  # a second run sends nothing more

    mark = len(emulator.events)
    emulator.advance(days=31)
    deliver(emulator.events[mark:])
    renewal = next(i for i in emulator.list_objects("invoice") if i["billing_reason"] == "subscription_cycle")
    usage_line = next(line for line in renewal["lines"]["data"]
                      if line["pricing"]["price_details"]["price"] == metered_plan["id"])
    assert (usage_line["quantity"], usage_line["amount"]) == (250, 900)
    local = Invoice.objects.get(stripe_id=renewal["id"])
    pdf_line = next(line for line in invoice_pdf_context(local)["lines"] if line["usage_tiers"])
    assert pdf_line["usage_tiers"] == ["1 to 100: 100 x 0.05 USD = $5.00",
                                       "101 and up: 150 x 0.02 USD + $1.00 flat = $4.00"]

    run = reconciliation_run(triggered_by="test")
    assert (run.status, run.drift_count) == ("clean", 0), list(run.items.values("kind", "stripe_id", "expected", "actual"))
    assert run.checked["usage_periods"] == 2

    # A report recorded as sent that never reached Stripe.
    usage_events_ingest(events=[{"customer": customer.email, "meter": "api_calls", "quantity": 7,
                                 "idempotency_key": "dropped"}])
    usage_reports_claim()
    UsageReport.objects.filter(state="pending").update(state="sent")
    run = reconciliation_run(triggered_by="test")
    assert run.status == "drift"
    item = run.items.get()
    assert (item.kind, item.customer, item.expected, item.actual) == (DriftItem.Kind.USAGE_TOTAL, customer, "250", "257")
    with pytest.raises(ServiceError, match="usage difference"):
        drift_item_resync(item=item, actor_type="admin", actor="support")
