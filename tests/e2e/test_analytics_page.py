"""Support opens the analytics page in a real browser, light and dark, and downloads a chart's CSV; the
screenshots go to the browser test's artifacts (var/test-artifacts/11-admin-analytics*.png)."""
from datetime import timedelta

import pytest
from django.contrib.auth import get_user_model
from django.core.management import call_command
from django.utils import timezone

pytestmark = [pytest.mark.e2e]

PASSWORD = "support-analytics-e2e-password"


def _history():
    """The analytics tests' fixture history replayed up to this month, plus failed renewals, Stripe events
    and pushes of the last days."""
    from billing_console.models import WebhookEvent
    from deployments.models import Deployment, PublishVersion
    from dunning.models import DunningCase, DunningStepLog
    from tests.analytics.history import build_history
    from tests.dunning.factories import DunningCaseFactory, DunningStepLogFactory

    now = timezone.now()
    shift = (now.year * 12 + now.month) - (2026 * 12 + 7)
    customers = build_history(shift_months=shift)
    for days_ago, status, step in ((40, DunningCase.Status.RECOVERED, "SOFT_D+1"), (35, DunningCase.Status.RECOVERED, None),
                                   (20, DunningCase.Status.RECOVERED, "SOFT_D+3"), (12, DunningCase.Status.CANCELED, None),
                                   (3, DunningCase.Status.OPEN, None)):
        opened = now - timedelta(days=days_ago)
        case = DunningCaseFactory(customer=customers["dave"], opened_at=opened, status=status, amount_due=1000,
                                  closed_at=opened + timedelta(days=4) if status != DunningCase.Status.OPEN else None)
        if step:
            DunningStepLogFactory(case=case, step_code=step, channel="whatsapp" if step.endswith("3") else "email",
                                  status=DunningStepLog.Status.SENT, sent_at=opened + timedelta(days=2))
    for i in range(120):
        at = now - timedelta(hours=i * 1.3)
        event = WebhookEvent.objects.create(stripe_id=f"evt_e2e_analytics{i}", type="invoice.paid", stripe_created=at,
                                            payload={}, status="failed" if i % 17 == 0 else "processed")
        WebhookEvent.objects.filter(pk=event.pk).update(received_at=at, processed_at=at + timedelta(seconds=1 + i % 4))
    from billing_console.models import CheckoutAttempt

    for i, status in enumerate(["paid", "paid", "abandoned", "paid", "abandoned", "pending", "paid", "paid"] * 3):
        attempt = CheckoutAttempt.objects.create(plan="pro", price_id="price_pro", status=status,
                                                 follow_up_status="sent" if status == "abandoned" and i % 2 else "none")
        CheckoutAttempt.objects.filter(pk=attempt.pk).update(created_at=now - timedelta(days=i * 9))
    deployment = Deployment.objects.create(customer=customers["alice"], account_id="acc-e2e", script_name="alice-app")
    for n, status in enumerate(["live", "live", "failed", "superseded", "live"], start=1):
        p = PublishVersion.objects.create(deployment=deployment, number=n, version=f"1.0.{n}", status=status)
        PublishVersion.objects.filter(pk=p.pk).update(created_at=now - timedelta(days=n, hours=2))


def _log_in(page, console):
    page.goto(f"{console.url}/admin/")
    page.fill("#id_username", "support-analytics")
    page.fill("#id_password", PASSWORD)
    page.click("input[type=submit]")


def test_support_reads_the_analytics_page_light_and_dark(console, page, browser):
    from billing_console.ops.support import support_group_ensure

    _history()
    call_command("analytics_snapshot", "--months", "12")
    support = get_user_model().objects.create_user("support-analytics", password=PASSWORD, is_staff=True)
    support.groups.add(support_group_ensure())

    _log_in(page, console)
    page.click("a.dash-stat[href=\"/admin/analytics/\"]")  # the dashboard's Analytics card
    page.wait_for_url("**/admin/analytics/")
    assert page.locator("svg.an-chart").count() >= 12
    assert "MRR and its movements, USD" in page.inner_text("#content")
    console.shot(page, "11-admin-analytics")

    csv = page.request.get(page.locator("#chart-mrr-usd .an-csv a").get_attribute("href"))
    assert csv.status == 200 and csv.text().startswith("period,New (USD)")

    dark = browser.new_context(viewport={"width": 1280, "height": 900}, base_url=console.url, color_scheme="dark")
    try:
        dark_page = dark.new_page()
        _log_in(dark_page, console)
        dark_page.goto(f"{console.url}/admin/analytics/")
        assert dark_page.locator("svg.an-chart").count() >= 12
        console.shot(dark_page, "12-admin-analytics-dark")
    finally:
        dark.close()
