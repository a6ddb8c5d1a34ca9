"""Usage billing: ingestion through POST /api/billing/usage and reporting to the Stripe sandbox's meters.

1. single-event requests (8 clients, one event each, unique keys) acknowledged per second and their
   p99, against the bare insert view (bench/webhook_urls.py) on the same server in the same run;
2. 1,000-event batches (4 clients) in events per second;
3. N stored events (default 1,000,000) for 1,000 customers, written with COPY over two reporting
   windows, then one `usage_report_run()` in this process against the sandbox in its own process:
   seconds, peak memory growth, and SQL statements; the same at a small N shows that neither the
   statements nor the memory grow with the number of events.

Everything on PostgreSQL and loopback: gunicorn gthread 2x4, Redis for the rate-limit counters.

    .venv/bin/python bench/bench_usage.py [--events 1000000] [--small 50000] [--requests 4000] [--batches 40]

Targets (issue 21): single >= 0.5x bare insert with p99 < 100 ms; batches >= 20,000 events/s; 1,000,000
events reported in <= 60 s with flat memory and a statement count that does not grow with events.
Prints one line and writes var/bench/usage.json.
"""
import argparse
import json
import os
import statistics
import sys
import time
import uuid
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.harness import (  # noqa: E402
    OUT, Gunicorn, Request, bench_database_url, django_env, ensure_database, run_load, stop, write_result,
)
from bench.bench_webhooks import start_emulator  # noqa: E402

API_KEY = "sk_test_bench" + "Us4g3B3nch0123456789abcd"
SECRET = "usage-bench-secret-0123456789"
METER = "api_calls"


def load_avg() -> str:
    return " ".join(Path("/proc/loadavg").read_text().split()[:3])


def rss_kib(field: str = "VmRSS") -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1])
    return 0


def reset_peak() -> None:
    try:
        Path("/proc/self/clear_refs").write_text("5")  # resets VmHWM to the current RSS
    except OSError:
        pass


def reset_tables() -> None:
    from django.db import connection

    with connection.cursor() as cur:
        cur.execute("CREATE TABLE IF NOT EXISTS bench_insert (id bigserial PRIMARY KEY, payload jsonb NOT NULL)")
        cur.execute("TRUNCATE bench_insert, billing_console_usageevent, billing_console_usagereport, "
                    "billing_console_auditevent, billing_console_cronrun")
        cur.execute("TRUNCATE billing_console_customer RESTART IDENTITY CASCADE")


def seed(n: int) -> list[dict]:
    """n customers in the sandbox and in the console, and the meter."""
    from billing_console.invoicing.usage_meters import usage_meters_setup
    from billing_console.models import Customer
    from billing_console.stripe import gateway

    customers = []
    for i in range(n):
        c = gateway.client().v1.customers.create(params={"email": f"usage{i}@example.com"})
        customers.append({"id": c.id, "email": c.email})
    Customer.objects.bulk_create([Customer(email=c["email"], stripe_customer_id=c["id"]) for c in customers])
    by_id = dict(Customer.objects.values_list("stripe_customer_id", "id"))
    for c in customers:
        c["pk"] = by_id[c["id"]]
    usage_meters_setup()
    return customers


def encode(path: str, bodies: list[bytes], clients: int, auth: bool) -> list[list[bytes]]:
    per_client: list[list[bytes]] = [[] for _ in range(clients)]
    for i, body in enumerate(bodies):
        headers = {"Content-Type": "application/json"}
        if auth:
            headers["Authorization"] = f"Bearer {SECRET}"
        per_client[i % clients].append(Request("POST", path, body, headers).encode())
    return per_client


def event(customers: list[dict], i: int, prefix: str) -> dict:
    return {"customer": customers[i % len(customers)]["email"], "meter": METER, "quantity": 1 + i % 7,
            "idempotency_key": f"{prefix}-{i}"}


def store_events(customers: list[dict], n: int) -> int:
    """n events with COPY, over two reporting windows that ended before now. Returns the windows' start."""
    from django.db import connection
    from django.utils import timezone

    now = int(time.time())
    first_window = (now - 150) // 60 * 60
    received = timezone.now()
    with connection.cursor() as cur:
        with cur.cursor.copy("COPY billing_console_usageevent (customer_id, meter, quantity, timestamp, window_start, "
                             "idempotency_key, received_at) FROM STDIN") as copy:
            from datetime import datetime, timezone as dt_timezone

            stamps = [datetime.fromtimestamp(first_window + s, tz=dt_timezone.utc) for s in range(120)]
            for i in range(n):
                second = i % 120
                copy.write_row((customers[i % len(customers)]["pk"], METER, 1 + i % 7, stamps[second],
                                first_window + second // 60 * 60, f"copy-{n}-{i}", received))
        cur.execute("ANALYZE billing_console_usageevent")
    return first_window


def report(customers: list[dict], n: int) -> dict:
    from django.db import connection
    from django.db.models import Sum
    from django.test.utils import CaptureQueriesContext

    from billing_console.invoicing.usage import usage_report_run
    from billing_console.models import UsageEvent, UsageReport

    with connection.cursor() as cur:
        cur.execute("TRUNCATE billing_console_usageevent, billing_console_usagereport, billing_console_auditevent")
    t0 = time.perf_counter()
    store_events(customers, n)
    stored_seconds = time.perf_counter() - t0
    expected = UsageEvent.objects.aggregate(total=Sum("quantity"))["total"]
    reset_peak()
    before = rss_kib()
    with CaptureQueriesContext(connection) as queries:
        t0 = time.perf_counter()
        counts = usage_report_run()
        seconds = time.perf_counter() - t0
    peak_growth = rss_kib("VmHWM") - before
    sent = UsageReport.objects.filter(state="sent").aggregate(total=Sum("quantity"))["total"]
    return {"events": n, "store_seconds": round(stored_seconds, 1), "report_seconds": round(seconds, 2),
            "counts": counts, "statements": len(queries.captured_queries), "peak_rss_growth_kib": peak_growth,
            "quantity_stored": str(expected), "quantity_sent": str(sent), "all_sent": expected == sent}


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--customers", type=int, default=1000)
    parser.add_argument("--requests", type=int, default=4000, help="single-event requests")
    parser.add_argument("--bare-seconds", type=float, default=8.0)
    parser.add_argument("--clients", type=int, default=8)
    parser.add_argument("--batches", type=int, default=40, help="1,000-event batch requests")
    parser.add_argument("--batch-clients", type=int, default=4)
    parser.add_argument("--events", type=int, default=1_000_000, help="stored events reported in one run")
    parser.add_argument("--small", type=int, default=50_000, help="the small run the big one is compared with")
    args = parser.parse_args()

    url = bench_database_url()
    ensure_database(url)
    OUT.mkdir(parents=True, exist_ok=True)
    emulator, emu_url = start_emulator()
    env = django_env(url, DJANGO_SETTINGS_MODULE="bench.webhook_settings", STRIPE_SECRET_KEY=API_KEY,
                     STRIPE_API_HOST=emu_url, ALLOWED_HOSTS="127.0.0.1,localhost",
                     CLOUD_MASTER_KEY="bench-master-key-0123456789abcdef", USAGE_API_SECRET=SECRET,
                     USAGE_METERS=f"{METER}:sum", USAGE_RATE_LIMIT_PER_CLIENT=str(10 ** 9),
                     REDIS_URL=os.environ.get("REDIS_URL", "redis://127.0.0.1:6379/0"), STRIPE_MAX_RETRIES="0")
    os.environ.update(env)
    import django

    django.setup()
    loads = {"start": load_avg()}
    try:
        reset_tables()
        customers = seed(args.customers)
        run = uuid.uuid4().hex[:8]
        with Gunicorn(env) as server:
            warm = [json.dumps(event(customers, i, f"warm{run}")).encode() for i in range(200)]
            run_load(server.port, encode("/api/billing/usage", warm, args.clients, True))
            run_load(server.port, encode("/bench/insert", warm, args.clients, False), repeat_for=1.0)
            singles = [json.dumps(event(customers, i, f"one{run}")).encode() for i in range(args.requests)]
            bare = run_load(server.port, encode("/bench/insert", singles, args.clients, False),
                            repeat_for=args.bare_seconds)
            single = run_load(server.port, encode("/api/billing/usage", singles, args.clients, True))
            batches = [json.dumps({"events": [event(customers, b * 1000 + i, f"batch{run}") for i in range(1000)]},
                                  separators=(",", ":")).encode() for b in range(args.batches)]
            batch = run_load(server.port, encode("/api/billing/usage", batches, args.batch_clients, True))
        loads["after_ingest"] = load_avg()
        small = report(customers, args.small)
        big = report(customers, args.events)
        loads["after_report"] = load_avg()
    finally:
        stop(emulator)

    ratio = single.rate / bare.rate if bare.rate else 0.0
    single_p99 = single.pct(99) * 1000
    batch_events = batch.rate * 1000
    statuses_ok = set(single.statuses) == {202} and set(batch.statuses) == {202}
    result = {
        "config": vars(args), "server": "gunicorn gthread 2 workers x 4 threads", "load_average": loads,
        "bare_insert": bare.summary(), "single": single.summary(), "batches": batch.summary(),
        "report_small": small, "report_big": big,
        "figures": {"single_per_s": round(single.rate, 1), "single_p99_ms": round(single_p99, 1),
                    "bare_insert_per_s": round(bare.rate, 1), "single_to_bare": round(ratio, 2),
                    "batch_events_per_s": round(batch_events), "report_seconds": big["report_seconds"],
                    "statements_small_big": [small["statements"], big["statements"]],
                    "peak_rss_growth_kib_small_big": [small["peak_rss_growth_kib"], big["peak_rss_growth_kib"]]},
        "met": {"single": ratio >= 0.5 and single_p99 < 100, "batches": batch_events >= 20_000,
                "report": big["report_seconds"] <= 60 and big["all_sent"],
                # Same customers and windows, so the same reports: the statements must not grow with events.
                "statements_flat": big["statements"] <= small["statements"],
                "statuses": statuses_ok},
    }
    write_result("usage", result)
    print(json.dumps(result["figures"]))
    print(f"usage: single {single.rate:.0f}/s p99 {single_p99:.0f} ms = {ratio:.2f}x bare insert {bare.rate:.0f}/s "
          f"(target >= 0.5, p99 < 100); batches {batch_events:,.0f} events/s (target >= 20,000); "
          f"{big['events']:,} events / {big['counts'].get('claimed', 0):,} reports sent in {big['report_seconds']:.1f} s "
          f"(target <= 60), peak memory +{big['peak_rss_growth_kib'] / 1024:.0f} MiB vs "
          f"+{small['peak_rss_growth_kib'] / 1024:.0f} MiB at {small['events']:,}, SQL {big['statements']} vs "
          f"{small['statements']}; load {loads['start']} -> {loads['after_report']}")


if __name__ == "__main__":
    main()
