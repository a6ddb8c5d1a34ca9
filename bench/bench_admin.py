"""Admin with 100,000 customers: time and SQL query count of the customer changelist (first page,
a deep page, a search, a filter) and of one customer's page, on PostgreSQL, in-process (Django's
test client, logged in as a superuser; no network in the figure).

    .venv/bin/python bench/bench_admin.py [--customers 100000] [--runs 5]

Prints one line and writes var/bench/admin.json. Rows are bulk-created in the bench database
(BENCH_DATABASE_URL, default bc_bench) and removed at the end.
"""
import argparse
import os
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.harness import bench_database_url, django_env, ensure_database, write_result  # noqa: E402


def seed(n: int) -> None:
    from datetime import timedelta

    from django.db import connection
    from django.utils import timezone

    from billing_console.models import Customer

    with connection.cursor() as cur:
        cur.execute("TRUNCATE billing_console_customer RESTART IDENTITY CASCADE")
    states = ["active"] * 17 + ["grace", "soft_locked", "hard_locked"]
    statuses = ["active"] * 16 + ["past_due", "canceled", "trialing", "unpaid"]
    now = timezone.now()
    batch = 5000
    for start in range(0, n, batch):
        Customer.objects.bulk_create([
            Customer(email=f"bench{i:06d}@example.com", name=f"Bench Customer {i}",
                     subscription_id=f"sub_bench{i:06d}", subscription_status=statuses[i % 20],
                     plan="pro" if i % 3 else "team", price_id="price_bench", access_state=states[i % 20],
                     current_period_end=now + timedelta(days=i % 30), cohort="legacy-2025" if i % 10 == 0 else "")
            for i in range(start, min(n, start + batch))
        ])
    with connection.cursor() as cur:
        cur.execute("ANALYZE billing_console_customer")


def measure(client, url: str, runs: int) -> dict:
    from django.db import connection
    from django.test.utils import CaptureQueriesContext

    response = client.get(url)  # warm: templates, caches, plans
    assert response.status_code == 200, (url, response.status_code)
    times, queries, sql_ms, slowest = [], [], [], {}
    for _ in range(runs):
        with CaptureQueriesContext(connection) as ctx:
            t0 = time.perf_counter()
            response = client.get(url)
            times.append(time.perf_counter() - t0)
        assert response.status_code == 200, (url, response.status_code)
        queries.append(len(ctx.captured_queries))
        sql_ms.append(sum(float(q["time"]) for q in ctx.captured_queries) * 1000)
        top = max(ctx.captured_queries, key=lambda q: float(q["time"]))
        slowest = {"ms": round(float(top["time"]) * 1000, 1), "sql": top["sql"][:300]}
    return {"url": url, "median_ms": round(statistics.median(times) * 1000, 1),
            "max_ms": round(max(times) * 1000, 1), "queries": max(queries),
            "sql_median_ms": round(statistics.median(sql_ms), 1), "slowest_query": slowest}


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--customers", type=int, default=100_000)
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--keep", action="store_true", help="leave the rows in the bench database")
    parser.add_argument("--reuse", action="store_true", help="use rows a --keep run left")
    args = parser.parse_args()

    url = bench_database_url()
    ensure_database(url)
    os.environ.update(django_env(url, ALLOWED_HOSTS="testserver"))
    import django

    django.setup()
    from django.contrib.auth.models import User
    from django.db import connection
    from django.test import Client

    from billing_console.models import Customer

    from billing_console.models import Customer as C

    t0 = time.perf_counter()
    if not (args.reuse and C.objects.count() == args.customers):
        seed(args.customers)
    seed_s = time.perf_counter() - t0
    User.objects.filter(username="bench-admin").delete()
    admin = User.objects.create_superuser("bench-admin", "bench-admin@example.com", "bench-admin-password-0")
    client = Client()
    client.force_login(admin)
    customer = Customer.objects.order_by("pk")[args.customers // 2]
    base = "/admin/billing_console/customer/"
    pages = {
        "changelist": measure(client, base, args.runs),
        "changelist_deep_page": measure(client, f"{base}?p={args.customers // 100 - 1}", args.runs),
        "changelist_search_email": measure(client, f"{base}?q={customer.email}", args.runs),
        "changelist_filter": measure(client, f"{base}?access_state__exact=soft_locked", args.runs),
        "customer_page": measure(client, f"{base}{customer.pk}/change/", args.runs),
    }
    if not args.keep:
        with connection.cursor() as cur:
            cur.execute("TRUNCATE billing_console_customer RESTART IDENTITY CASCADE")
        admin.delete()
    result = {"customers": args.customers, "seed_seconds": round(seed_s, 1), "runs": args.runs, "pages": pages}
    write_result("admin", result)
    cl, cp = pages["changelist"], pages["customer_page"]
    print(f"admin ({args.customers:,} customers): changelist {cl['median_ms']} ms / {cl['queries']} queries, "
          f"search {pages['changelist_search_email']['median_ms']} ms / {pages['changelist_search_email']['queries']} q, "
          f"customer page {cp['median_ms']} ms / {cp['queries']} queries")


if __name__ == "__main__":
    main()
