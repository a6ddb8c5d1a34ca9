"""The benches that write rows with raw SQL (set-based INSERT ... SELECT, to reach a million rows in
seconds) name every NOT NULL column themselves: a new column without a database default breaks them
silently until someone runs `make bench`. Twice now (Invoice.amount_refunded, WebhookEvent.mirror).
These seed a few rows of each on the test database, so such a column fails here instead."""
import pytest
from django.db import connection

from billing_console.models import Customer, Invoice, WebhookEvent

pytestmark = [pytest.mark.django_db,
              pytest.mark.skipif("connection.vendor != 'postgresql'", reason="the benches' SQL is PostgreSQL's")]


def test_the_analytics_bench_seeds_the_current_schema():
    from bench.bench_analytics import seed
    from dunning.models import DunningCase

    seed(30, 90)
    assert Customer.objects.count() == 30 and Invoice.objects.count() == 90
    assert WebhookEvent.objects.filter(mirror="").count() == WebhookEvent.objects.count() > 0
    assert DunningCase.objects.exists()


def test_the_admin_bench_seeds_the_current_schema():
    from bench.bench_admin import seed

    seed(25)
    assert Customer.objects.count() == 25
