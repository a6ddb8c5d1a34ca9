"""The analytics page and its CSV: who may see them, what they show, and a fixed query count."""
import csv
import io

import pytest
from django.contrib.auth.models import Group, User
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.urls import reverse

from billing_console.analytics.snapshot import analytics_hourly_build, analytics_snapshot_build
from billing_console.ops.support import SUPPORT_GROUP, support_group_ensure
from tests.analytics.history import build_history

URL = "/admin/analytics/"


@pytest.fixture
def support_client(client, db):
    support_group_ensure()
    user = User.objects.create_user("support-a", "s@example.com", "pw", is_staff=True)
    user.groups.add(Group.objects.get(name=SUPPORT_GROUP))
    client.force_login(user)
    return client


@pytest.fixture
def history(db):
    build_history()
    analytics_snapshot_build(months=12)
    analytics_hourly_build()


def test_anonymous_is_sent_to_the_admin_login(client, db):
    response = client.get(URL)
    assert response.status_code == 302 and "/admin/login/" in response["Location"]
    assert client.get(URL + "checkout-funnel.csv").status_code == 302


def test_staff_without_the_permission_sees_only_a_note(client, history):
    client.force_login(User.objects.create_user("staff-x", "x@example.com", "pw", is_staff=True))
    response = client.get(URL)
    assert response.status_code == 403
    body = response.content.decode()
    assert "for the support group and superusers" in body and "an-chart" not in body and "MRR" not in body
    assert client.get(URL + "mrr-usd.csv").status_code == 403


def test_support_sees_every_chart_with_its_numbers(support_client, history):
    response = support_client.get(URL)
    assert response.status_code == 200
    body = response.content.decode()
    for slug in ("mrr-usd", "mrr-eur", "subscribers", "trials", "churned-customers", "churn-rates",
                 "churned-mrr-usd", "checkout-funnel", "dunning-recovery", "stripe-events", "stripe-lag",
                 "push-outcomes"):
        assert f'id="chart-{slug}"' in body, slug
        assert reverse("console-analytics-csv", args=[slug]) in body
    assert body.count('<svg class="an-chart"') >= 12 and "<table>" in body
    # No script of its own: the only one is the admin's theme switcher.
    assert body.count("<script") == body.count('<script src="/static/admin/js/')
    assert "Licence API calls by status" in body and "Not recorded" in body
    assert "€40.00" in body  # EUR MRR stays EUR, in its own chart


def test_superuser_sees_the_page_and_the_dashboard_links_it(client, history):
    client.force_login(User.objects.create_superuser("root", "r@example.com", "pw"))
    assert client.get(URL).status_code == 200
    assert URL in client.get("/admin/").content.decode()


def test_csv_of_a_chart(support_client, history):
    response = support_client.get(URL + "mrr-usd.csv")
    assert response.status_code == 200 and response["Content-Type"].startswith("text/csv")
    assert 'filename="analytics-mrr-usd.csv"' in response["Content-Disposition"]
    rows = list(csv.reader(io.StringIO(response.content.decode())))
    assert rows[0] == ["period", "New (USD)", "Expansion (USD)", "Reactivated (USD)", "Contraction (USD)",
                       "Churned (USD)", "MRR (USD)"]
    assert len(rows) == 13
    by_month = {r[0]: r for r in rows[1:]}
    assert by_month["2026-04"][1:] == ["10.00", "20.00", "0.00", "0.00", "-20.00", "80.00"]


def test_unknown_chart_csv_is_404(support_client, db):
    assert support_client.get(URL + "no-such-chart.csv").status_code == 404


def test_query_count_does_not_grow_with_the_data(support_client, db):
    with CaptureQueriesContext(connection) as empty:
        assert support_client.get(URL).status_code == 200
    build_history()
    analytics_snapshot_build(months=12)
    with CaptureQueriesContext(connection) as full:
        assert support_client.get(URL).status_code == 200
    assert len(full.captured_queries) == len(empty.captured_queries)


def test_support_group_gets_the_analytics_permission_on_a_new_database(db):
    """On a new database the group is made before the analytics app's permissions exist (post_migrate runs
    per app, in order): making the group must create them first."""
    from django.contrib.auth.models import Permission

    Permission.objects.filter(content_type__app_label="analytics").delete()
    group = support_group_ensure()
    assert group.permissions.filter(content_type__app_label="analytics", codename="view_analytics").exists()
