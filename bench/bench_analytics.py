"""The analytics page at size: 100,000 customers and 1,000,000 invoices (plus a year of checkouts, a week
of Stripe events and dunning cases), on PostgreSQL, in-process (Django's test client, logged in as a
superuser; no network in the figure). Also times the daily snapshot that reads every invoice.

    .venv/bin/python bench/bench_analytics.py [--customers 100000] [--invoices 1000000] [--runs 5]

Prints one line and writes var/bench/analytics.json. Rows are generated in the database with
generate_series (INSERT ... SELECT) in the bench database (BENCH_DATABASE_URL, default bc_bench) and
removed at the end unless --keep.
"""
import argparse
import os
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.harness import bench_database_url, django_env, ensure_database, write_result  # noqa: E402


def seed(customers: int, invoices: int) -> None:
    """Customers through the admin bench's seeder; everything else set-based in SQL."""
    from django.db import connection

    from bench.bench_admin import seed as seed_customers
    from dunning.services import dunning_policy_ensure_default

    seed_customers(customers)  # truncates customers, cascading to invoices, attempts, cases
    policy = dunning_policy_ensure_default()
    per_customer = max(1, invoices // customers)
    with connection.cursor() as cur:
        cur.execute("TRUNCATE billing_console_webhookevent, analytics_monthlyfigure, analytics_hourlyfigure "
                    "RESTART IDENTITY")
        cur.execute("SELECT min(id) FROM billing_console_customer")
        first = cur.fetchone()[0]
        # Invoice i: customer i % customers, month (i / customers) before this one; one subscription line of
        # 10.00 (pro) or 30.00 (team) a month, every tenth customer in EUR, one in seven churned 3 months ago
        # (voided since), one in 50 unpaid.
        cur.execute("""
            INSERT INTO billing_console_invoice
              (stripe_id, customer_id, stripe_customer_id, subscription_id, number, status, currency, subtotal, tax,
               total, amount_due, amount_paid, discount, amount_refunded, period_start, period_end,
               hosted_invoice_url, stripe_created, state_at, data, pdf_path, delivery_status, delivery_attempts,
               delivery_error, created_at, updated_at)
            SELECT 'in_bench' || g.i, %(first)s + c, 'cus_bench' || c, 'sub_bench' || lpad(c::text, 6, '0'), '',
                   st, ccy, amt, 0, amt, amt, CASE WHEN st = 'paid' THEN amt ELSE 0 END, 0, 0, ps, pe, '', ps, ps,
                   jsonb_build_object('object', 'invoice', 'id', 'in_bench' || g.i, 'status', st, 'currency', ccy,
                     'lines', jsonb_build_object('object', 'list', 'data', jsonb_build_array(jsonb_build_object(
                        'object', 'line_item', 'amount', amt, 'currency', ccy, 'quantity', 1, 'discount_amounts', '[]'::jsonb,
                        'period', jsonb_build_object('start', extract(epoch FROM ps)::bigint, 'end', extract(epoch FROM pe)::bigint),
                        'parent', jsonb_build_object('type', 'subscription_item_details', 'subscription_item_details',
                            jsonb_build_object('proration', false, 'subscription', 'sub_bench' || lpad(c::text, 6, '0'),
                                               'subscription_item', 'si_bench' || c)),
                        'pricing', jsonb_build_object('type', 'price_details', 'price_details',
                            jsonb_build_object('price', CASE WHEN c %% 3 = 0 THEN 'price_team' ELSE 'price_pro' END)))))),
                   '', 'sent', 1, '', now(), now()
            FROM generate_series(0, %(n)s - 1) AS g(i)
            CROSS JOIN LATERAL (SELECT g.i %% %(customers)s AS c, g.i / %(customers)s AS k) AS x
            CROSS JOIN LATERAL (SELECT date_trunc('month', now()) - make_interval(months => x.k) AS ps) AS p
            CROSS JOIN LATERAL (SELECT p.ps + interval '1 month' AS pe,
                                       CASE WHEN x.c %% 10 = 0 THEN 'eur' ELSE 'usd' END AS ccy,
                                       CASE WHEN x.c %% 3 = 0 THEN 3000 ELSE 1000 END AS amt,
                                       CASE WHEN x.c %% 7 = 0 AND x.k < 3 THEN 'void'
                                            WHEN x.c %% 50 = 0 AND x.k = 0 THEN 'open' ELSE 'paid' END AS st) AS y
        """, {"first": first, "n": per_customer * customers, "customers": customers})
        cur.execute("""
            INSERT INTO billing_console_checkoutattempt
              (id, token, recovery_email_encrypted, email_hint, plan, price_id, device_id, status, stripe_session_id,
               customer_id, follow_up_status, follow_up_sent_at, created_at, completed_at)
            SELECT gen_random_uuid(), 'tok_bench' || g, '', 'b***@example.com', 'pro', 'price_pro', '',
                   (ARRAY['paid', 'paid', 'abandoned', 'pending'])[1 + g % 4], NULL, NULL,
                   CASE WHEN g % 4 = 2 THEN 'skipped' ELSE 'none' END, NULL,
                   now() - make_interval(mins => g * 17), NULL
            FROM generate_series(1, 30000) AS g
        """)
        cur.execute("""
            INSERT INTO billing_console_webhookevent
              (stripe_id, type, livemode, api_version, stripe_created, object_id, payload, status, attempts, last_error,
               next_attempt_at, received_at, processed_at, deliveries, mirror, mirror_error)
            SELECT 'evt_bench' || g, 'invoice.paid', false, '', now() - make_interval(secs => g * 12), 'in_bench' || g,
                   '{}'::jsonb, CASE WHEN g % 97 = 0 THEN 'failed' ELSE 'processed' END, 1, '', NULL,
                   now() - make_interval(secs => g * 12), now() - make_interval(secs => g * 12 - 1 - g % 5), 1, '', ''
            FROM generate_series(1, 50000) AS g
        """)
        cur.execute("""
            INSERT INTO dunning_dunningcase
              (customer_id, policy_id, invoice_id, subscription_id, stripe_customer_id, amount_due, currency,
               hosted_invoice_url, attempt_count, opened_at, last_failure_at, status, next_step_at, exhausted_at,
               closed_at, close_reason, cancel_requested_at, cancel_error, created_at, updated_at)
            SELECT %(first)s + (g * 13) %% %(customers)s, %(policy)s, 'in_case' || g, '', '', 1000, 'usd', '', 1,
                   now() - make_interval(hours => g * 2), now() - make_interval(hours => g * 2),
                   (ARRAY['recovered', 'recovered', 'canceled', 'open'])[1 + g %% 4], NULL, NULL,
                   now() - make_interval(hours => g * 2 - 30), '', NULL, '', now(), now()
            FROM generate_series(1, 5000) AS g
        """, {"first": first, "policy": policy.pk, "customers": customers})
        for table in ("billing_console_invoice", "billing_console_checkoutattempt", "billing_console_webhookevent",
                      "dunning_dunningcase"):
            cur.execute(f"ANALYZE {table}")


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--customers", type=int, default=100_000)
    parser.add_argument("--invoices", type=int, default=1_000_000)
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

    from bench.bench_admin import measure
    from billing_console.analytics.snapshot import analytics_hourly_build, analytics_snapshot_build
    from billing_console.models import Customer, Invoice

    t0 = time.perf_counter()
    if not (args.reuse and Customer.objects.count() == args.customers and Invoice.objects.count() >= args.invoices):
        seed(args.customers, args.invoices)
    seed_s = time.perf_counter() - t0
    t0 = time.perf_counter()
    snapshot = analytics_snapshot_build(months=12)
    snapshot_s = time.perf_counter() - t0
    t0 = time.perf_counter()
    analytics_hourly_build()
    hourly_s = time.perf_counter() - t0

    User.objects.filter(username="bench-admin").delete()
    admin = User.objects.create_superuser("bench-admin", "bench-admin@example.com", "bench-admin-password-0")
    client = Client()
    client.force_login(admin)
    pages = {"analytics": measure(client, "/admin/analytics/", args.runs),
             "analytics_csv": measure(client, "/admin/analytics/mrr-usd.csv", args.runs)}
    counts = {"customers": Customer.objects.count(), "invoices": Invoice.objects.count()}
    if not args.keep:
        with connection.cursor() as cur:
            cur.execute("TRUNCATE billing_console_customer, billing_console_webhookevent, analytics_monthlyfigure, "
                        "analytics_hourlyfigure RESTART IDENTITY CASCADE")
        admin.delete()
    result = {**counts, "seed_seconds": round(seed_s, 1), "snapshot_seconds": round(snapshot_s, 1), "hourly_seconds": round(hourly_s, 2),
              "snapshot": snapshot, "runs": args.runs, "pages": pages}
    write_result("analytics", result)
    page = pages["analytics"]
    print(f"analytics ({counts['customers']:,} customers, {counts['invoices']:,} invoices): page {page['median_ms']} ms "
          f"(max {page['max_ms']}) / {page['queries']} queries, CSV {pages['analytics_csv']['median_ms']} ms; "
          f"daily snapshot {snapshot_s:.1f} s, hourly {hourly_s:.2f} s")


if __name__ == "__main__":
    main()
