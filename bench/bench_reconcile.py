"""Reconciliation at scale: N invoices, console side in PostgreSQL, Stripe side a recorded page set.

The console's rows (customers, invoices) are bulk-created in a scratch PostgreSQL database (created
and dropped here, migrations off as in the tests). Stripe's side is a page set recorded to disk as
Stripe list envelopes (100 objects a page, newest first, one JSON page per line) and read back page
by page through the same paginated reader (`PagedStripeView`) the gateway view uses, JSON parsing
included. The run is timed at 10,000 and at N invoices; the time ratio shows whether it grows
linearly (10x the invoices -> about 10x the time); each size is timed three times, median reported,
in wall time and in this process's CPU time (the steadier figure on a shared machine; PostgreSQL's
own work is in the wall time only). Peak memory is measured in a second run under
tracemalloc (Python allocations of the reconciliation itself), and the SQL statements are counted.

    make bench BENCH=reconcile     (or: .venv/bin/python bench/bench_reconcile.py [--invoices 100000];
                                    DATABASE_URL or BENCH_DATABASE_URL names the PostgreSQL server to use)

Prints one figure line; writes var/bench/reconcile.json.
"""
import argparse
import gc
import json
import os
import platform
import resource
import statistics
import sys
import time
import tracemalloc
from datetime import datetime, timedelta, timezone
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))  # run as a script from anywhere
os.environ.setdefault("DJANGO_SETTINGS_MODULE", "billing_console.settings")

INVOICES_PER_CUSTOMER = 10
PAGE = 100
BASE_TS = 1_767_225_600  # 2026-01-01T00:00:00Z


class _NoMigrations(dict):
    """MIGRATION_MODULES that turns every app's migrations off (tables straight from the models)."""

    def __contains__(self, item):
        return True

    def __getitem__(self, item):
        return None


def invoice_obj(i: int, customers: int) -> dict:
    """The i-th invoice, newest first by index; the same values the console rows get."""
    c = i % customers
    created = BASE_TS + (10_000_000 - i) * 60
    status = "open" if i % 50 == 0 else "void" if i % 97 == 0 else "paid"
    total = 1000 + (i % 7) * 100
    invoice_id = f"in_bench{i:09d}"
    return {
        "id": invoice_id, "object": "invoice", "customer": f"cus_bench{c:07d}", "currency": "usd",
        "status": status, "number": f"B{c:07d}-{i:05d}", "created": created, "billing_reason": "subscription_cycle",
        "subtotal": total, "total": total, "total_taxes": [], "amount_due": total,
        "amount_paid": total if status == "paid" else 0, "amount_remaining": 0 if status == "paid" else total,
        "period_start": created, "period_end": created + 30 * 86400, "livemode": False,
        "hosted_invoice_url": f"https://invoice.stripe.test/{invoice_id}",
        "parent": {"type": "subscription_details", "quote_details": None,
                   "subscription_details": {"metadata": {}, "subscription": f"sub_bench{c:07d}"}},
        "lines": {"object": "list", "has_more": False, "url": f"/v1/invoices/{invoice_id}/lines", "data": [
            {"id": f"il_bench{i:09d}", "object": "line_item", "amount": total, "currency": "usd", "quantity": 1,
             "description": "1 x Pro (at $10.00 / month)", "period": {"start": created, "end": created + 30 * 86400}}]},
        "status_transitions": {"finalized_at": created, "paid_at": created if status == "paid" else None,
                               "marked_uncollectible_at": None, "voided_at": None},
    }


def subscription_obj(c: int) -> dict:
    return {"id": f"sub_bench{c:07d}", "object": "subscription", "customer": f"cus_bench{c:07d}", "status": "active",
            "created": BASE_TS + c, "items": {"object": "list", "data": [
                {"id": f"si_bench{c:07d}", "current_period_end": BASE_TS + 40 * 86400}]}}


class RecordedPages:
    """Stripe list pages recorded to a file, one JSON envelope per line, read back by `starting_after`."""

    def __init__(self, folder: Path, invoices: int, customers: int):
        self.offsets: dict[str, list[int]] = {}
        self.ids: dict[str, dict[str, int]] = {}
        self.files: dict[str, Path] = {}
        self._record("invoices", folder, invoices, lambda i: invoice_obj(i, customers))
        self._record("subscriptions", folder, customers, subscription_obj)
        self.pages_read = 0

    def _record(self, resource: str, folder: Path, count: int, build):
        path = folder / f"reconcile-{resource}-{count}.jsonl"
        offsets, last_ids = [], {}
        with path.open("wb") as fh:
            for start in range(0, count, PAGE):
                data = [build(i) for i in range(start, min(start + PAGE, count))]
                offsets.append(fh.tell())
                last_ids[data[-1]["id"]] = len(offsets)  # starting_after this id -> next page
                envelope = {"object": "list", "data": data, "has_more": start + PAGE < count, "url": f"/v1/{resource}"}
                fh.write(json.dumps(envelope, separators=(",", ":")).encode() + b"\n")
        self.offsets[resource], self.ids[resource], self.files[resource] = offsets, last_ids, path

    def __call__(self, resource: str, params: dict) -> dict:
        assert params.get("limit") == PAGE and not params.get("customer")
        page = self.ids[resource][params["starting_after"]] if params.get("starting_after") else 0
        with self.files[resource].open("rb") as fh:
            fh.seek(self.offsets[resource][page])
            line = fh.readline()
        self.pages_read += 1
        return json.loads(line)

    def remove(self):
        for path in self.files.values():
            path.unlink(missing_ok=True)


def load_console(n: int, customers: int):
    from django.db import connection

    from billing_console.models import Customer, DriftItem, Invoice, ReconciliationRun

    with connection.cursor() as cursor:
        for model in (DriftItem, ReconciliationRun, Invoice, Customer):
            cursor.execute(f'TRUNCATE TABLE "{model._meta.db_table}" RESTART IDENTITY CASCADE')
    period_end = datetime.now(timezone.utc) + timedelta(days=20)
    batch = []
    for c in range(customers):
        batch.append(Customer(email=f"bench{c}@example.com", stripe_customer_id=f"cus_bench{c:07d}",
                              subscription_id=f"sub_bench{c:07d}", subscription_status="active", plan="pro",
                              price_id="price_bench", current_period_end=period_end))
        if len(batch) == 5000:
            Customer.objects.bulk_create(batch)
            batch = []
    Customer.objects.bulk_create(batch)
    pks = dict(Customer.objects.values_list("stripe_customer", "pk"))
    batch = []
    for i in range(n):
        obj = invoice_obj(i, customers)
        created = datetime.fromtimestamp(obj["created"], timezone.utc)
        batch.append(Invoice(stripe_id=obj["id"], customer_id=pks[obj["customer"]], stripe_customer_id=obj["customer"],
                             subscription_id=obj["parent"]["subscription_details"]["subscription"], number=obj["number"],
                             status=obj["status"], currency="usd", subtotal=obj["subtotal"], total=obj["total"],
                             amount_due=obj["amount_due"], amount_paid=obj["amount_paid"], stripe_created=created,
                             state_at=created, delivery_status="sent"))
        if len(batch) == 5000:
            Invoice.objects.bulk_create(batch)
            batch = []
    Invoice.objects.bulk_create(batch)
    with connection.cursor() as cursor:
        cursor.execute("ANALYZE")


def measure(n: int, folder: Path, repeat: int) -> dict:
    from django.db import connection
    from django.test.utils import CaptureQueriesContext

    from billing_console.invoicing.reconciliation import PagedStripeView, Scope, reconciliation_run

    customers = max(1, n // INVOICES_PER_CUSTOMER)
    started = time.monotonic()
    load_console(n, customers)
    pages = RecordedPages(folder, n, customers)
    setup_s = time.monotonic() - started
    try:
        times, cpu_times = [], []
        for _ in range(repeat):  # the median of a few runs: this machine is shared, single runs are noisy
            gc.collect()
            with CaptureQueriesContext(connection) as queries:
                started, cpu_started = time.monotonic(), time.process_time()
                run = reconciliation_run(scope=Scope(), stripe_view=PagedStripeView(pages), triggered_by="bench")
                times.append(time.monotonic() - started)
                cpu_times.append(time.process_time() - cpu_started)
            assert run.status == "clean", (run.status, run.error, run.checked)
            assert run.checked["invoices"] == n and run.checked["subscriptions"] == customers
        seconds, cpu_seconds = statistics.median(times), statistics.median(cpu_times)
        gc.collect()
        tracemalloc.start()
        reconciliation_run(scope=Scope(), stripe_view=PagedStripeView(pages), triggered_by="bench-memory")
        peak = tracemalloc.get_traced_memory()[1]
        tracemalloc.stop()
    finally:
        pages.remove()
    return {"invoices": n, "customers": customers, "seconds": round(seconds, 3), "cpu_seconds": round(cpu_seconds, 3),
            "invoices_per_s": round(n / seconds), "invoices_per_cpu_s": round(n / cpu_seconds),
            "peak_mib": round(peak / 2 ** 20, 1),
            "runs_seconds": [round(t, 3) for t in times], "runs_cpu_seconds": [round(t, 3) for t in cpu_times],
            "queries": len(queries),
            "stripe_pages": pages.pages_read // (repeat + 1), "setup_seconds": round(setup_s, 1)}


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--invoices", type=int, default=100_000)
    parser.add_argument("--small", type=int, default=10_000)
    parser.add_argument("--repeat", type=int, default=3, help="timed runs per size (the median is reported)")
    args = parser.parse_args()

    # Under `make bench` the database is the bench one (BENCH_DATABASE_URL); the scratch database made
    # from it is dropped at the end, so the bench database itself is never touched.
    from bench.harness import bench_database_url

    if os.environ.get("BENCH_DATABASE_URL") or not os.environ.get("DATABASE_URL"):
        os.environ["DATABASE_URL"] = bench_database_url()
    import django
    from django.conf import settings

    django.setup()
    if not settings.DATABASES["default"]["ENGINE"].endswith("postgresql"):
        sys.exit("Set DATABASE_URL to a PostgreSQL database (the benchmark measures the PostgreSQL path).")
    import logging

    logging.getLogger("billing_console").setLevel(logging.WARNING)
    settings.MIGRATION_MODULES = _NoMigrations()
    from django.db import connection

    connection.settings_dict["TEST"]["NAME"] = f"{connection.settings_dict['NAME']}_bench_reconcile"

    out_dir = ROOT / "var" / "bench"
    out_dir.mkdir(parents=True, exist_ok=True)
    connection.creation.create_test_db(verbosity=0, autoclobber=True, keepdb=False)
    try:
        small = measure(args.small, out_dir, args.repeat)
        large = measure(args.invoices, out_dir, args.repeat)
    finally:
        connection.creation.destroy_test_db(settings.DATABASES["default"]["NAME"], verbosity=0)
    ratio = large["seconds"] / small["seconds"]
    cpu_ratio = large["cpu_seconds"] / small["cpu_seconds"]
    result = {
        "benchmark": "reconcile", "date": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "machine": {"cpus": os.cpu_count(), "python": platform.python_version(), "load_avg_1m": os.getloadavg()[0]},
        "small": small, "large": large,
        "time_ratio": round(ratio, 2), "cpu_time_ratio": round(cpu_ratio, 2), "size_ratio": args.invoices / args.small,
        "max_rss_mib": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1),
    }
    (out_dir / "reconcile.json").write_text(json.dumps(result, indent=2) + "\n")
    print(f"reconcile: {large['invoices']:,} invoices in {large['seconds']:.1f} s ({large['cpu_seconds']:.1f} s CPU) = "
          f"{large['invoices_per_s']:,} invoices/s ({large['invoices_per_cpu_s']:,} per CPU second), peak {large['peak_mib']} MiB, "
          f"{large['queries']} queries; {small['invoices']:,} -> {large['invoices']:,}: time x{ratio:.1f}, CPU x{cpu_ratio:.1f} "
          f"(linear = x{args.invoices / args.small:.0f}; load average {result['machine']['load_avg_1m']:.1f} on {os.cpu_count()} CPUs)")


if __name__ == "__main__":
    main()
