"""Words where support looks: model names, the reconciliation run page, the entitlement reason, Stripe links."""
import pytest

from billing_console.models import LedgerEntry, ReconciliationRun
from tests.core.factories import SubscribedCustomerFactory

pytestmark = pytest.mark.django_db


def test_model_names_are_spelt_right(admin_client):
    from licensing.models import License

    assert (LedgerEntry._meta.verbose_name_plural, License._meta.verbose_name, License._meta.verbose_name_plural) == (
        "ledger entries", "licence", "licences")
    body = admin_client.get("/admin/").content.decode()
    assert "Ledger entries" in body and "Licences" in body and "Ledger entrys" not in body


def test_the_reconciliation_run_page_has_a_title_and_a_table(admin_client):
    run = ReconciliationRun.objects.create(
        status=ReconciliationRun.Status.DRIFT, drift_count=2, scope={"customer": None, "since": "2026-01-01"},
        checked={"customers": 3, "invoices": 12, "subscriptions": 3, "ledger_periods": 1, "full": True,
                 "by_kind": {"invoice_total": 2}, "cohorts": {"2026-01": 5}, "cohort_drift": {"2026-01": 1}})
    assert str(run).startswith(f"Reconciliation run #{run.pk} of ") and str(run).endswith("(drift)")
    body = admin_client.get(f"/admin/billing_console/reconciliationrun/{run.pk}/change/").content.decode()
    assert "ReconciliationRun object" not in body and f"Reconciliation run #{run.pk}" in body
    assert "<tr><th>Invoices</th><td>12</td></tr>" in body and "<tr><th>Drift: invoice total</th><td>2</td></tr>" in body
    assert "<tr><th>Cohort 2026-01</th><td>5 invoices, 1 drift item</td></tr>" in body
    assert "every customer, invoices since 2026-01-01" in body and ">2 items</a>" in body
    assert '{"customers"' not in body and "&quot;customers&quot;" not in body


def test_the_customer_page_says_the_entitlement_reason_in_words(admin_client):
    customer = SubscribedCustomerFactory()
    body = admin_client.get(f"/admin/billing_console/customer/{customer.pk}/change/").content.decode()
    assert "<dt>Entitled</dt><dd>Yes - subscription active, paid until" in body
    assert "<code>VALID</code>" not in body and "[VALID]" not in body


def test_stripe_links_open_the_sandbox_in_sandbox_mode_and_stripe_otherwise(admin_client, settings):
    customer = SubscribedCustomerFactory(stripe_customer_id="cus_links")
    url = f"/admin/billing_console/customer/{customer.pk}/change/"
    settings.STRIPE_API_HOST = "http://127.0.0.1:12111"
    body = admin_client.get(url).content.decode()
    assert 'href="http://127.0.0.1:12111/dashboard/customers/cus_links"' in body
    assert f'href="http://127.0.0.1:12111/dashboard/subscriptions/{customer.subscription_id}"' in body
    assert "dashboard.stripe.com" not in body and "Stripe (sandbox mode)" in body
    del settings.STRIPE_API_HOST
    body = admin_client.get(url).content.decode()
    assert 'href="https://dashboard.stripe.com/test/customers/cus_links"' in body and "Stripe (test mode)" in body
