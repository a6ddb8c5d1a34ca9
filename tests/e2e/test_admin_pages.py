"""Support's customer page and a reconciliation run page in a real browser at 1280 px: nothing wider than the
window, words instead of codes and JSON. Screenshots: var/test-artifacts/13-admin-customer.png and
14-admin-reconciliation-run.png."""
import pytest
from django.contrib.auth import get_user_model

pytestmark = [pytest.mark.e2e]

PASSWORD = "admin-pages-e2e-password"


def _log_in(page, console):
    page.goto(f"{console.url}/admin/")
    page.fill("#id_username", "admin-pages")
    page.fill("#id_password", PASSWORD)
    page.click("input[type=submit]")
    page.wait_for_url("**/admin/")


def _page_width(page) -> int:
    return page.evaluate("document.documentElement.scrollWidth")


def test_customer_and_reconciliation_pages_fit_1280_px_and_speak_words(console, page):
    from billing_console.models import CheckoutAttempt, ReconciliationRun
    from tests.core.factories import SubscribedCustomerFactory

    get_user_model().objects.create_superuser("admin-pages", "admin-pages@example.com", PASSWORD)
    customer = SubscribedCustomerFactory(email="wide.table@example.com", stripe_customer_id="cus_e2eWideTable01",
                                         phone="+15555550123")
    for n, status in enumerate(["paid", "abandoned", "pending"]):
        CheckoutAttempt.objects.create(customer=customer, plan="pro", price_id="price_sandbox_pro", status=status,
                                       email_hint="w***@example.com",
                                       stripe_session_id=f"cs_test_a1{n}" + "Zq9XkLmN3pR7sT2vW5yB8cD4fG6hJ0" * 2)
    run = ReconciliationRun.objects.create(
        status=ReconciliationRun.Status.CLEAN, scope={"customer": None, "since": None}, triggered_by="cron",
        checked={"customers": 1, "invoices": 4, "subscriptions": 1, "ledger_periods": 0, "full": True,
                 "by_kind": {}, "cohorts": {"2026-11": 4}, "cohort_drift": {"2026-11": 0}})

    _log_in(page, console)
    page.goto(f"{console.url}/admin/billing_console/customer/{customer.pk}/change/")
    content = page.inner_text("#content")
    assert "Yes - subscription active" in content and "VALID" not in content
    assert page.locator("#checkout_attempts-group tbody tr").count() >= 3
    console.shot(page, "13-admin-customer")
    assert _page_width(page) <= 1280
    stripe_link = page.locator("a", has_text="Customer in Stripe").get_attribute("href")
    assert stripe_link == f"{console.sandbox.stripe.url}/dashboard/customers/cus_e2eWideTable01"

    page.goto(f"{console.url}/admin/billing_console/reconciliationrun/{run.pk}/change/")
    assert page.title().startswith(f"Reconciliation run #{run.pk}") or f"Reconciliation run #{run.pk}" in page.inner_text("#content")
    assert "ReconciliationRun object" not in page.content()
    assert page.locator("td.field-checked_table table tr, div.field-checked_table table tr").count() >= 5
    console.shot(page, "14-admin-reconciliation-run")
    assert _page_width(page) <= 1280
