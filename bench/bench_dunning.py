"""Dunning task benchmark: the `dunning_send` cron over N open cases whose next step is due, on PostgreSQL.

    DATABASE_URL=postgres://... .venv/bin/python bench/bench_dunning.py [--cases 10000] [--compare 1000] [--batch 200]
    (or `BENCH=dunning make bench`, which uses the bc_bench database)

Each case's first step (FAIL_IMMEDIATE) was sent yesterday and SOFT_D+1 (email, locmem backend) is due
now, so one run queues N step logs and sends N emails. The same run is done first over `--compare`
cases: the SQL statement count must grow only with the number of batches (ceil(N / batch)), never per
case. Then the hourly access-policy enforcement runs over the same N cases. Prints one figure line and
writes var/bench/dunning.json. The benchmark's own rows (emails ending @bench.dunning) are replaced.
"""
from __future__ import annotations

import argparse
import json
import math
import os
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
BENCH_DOMAIN = "bench.dunning"


def seed(n: int, policy, now):
    """N subscribed customers in grace, each with an open case opened a day ago and its first step sent."""
    from datetime import timedelta

    from billing_console.models import Customer
    from dunning.models import DunningCase, DunningStepLog

    # The previous run's rows, children first (one DELETE each instead of collecting every case).
    DunningStepLog.objects.filter(case__customer__email__endswith=f"@{BENCH_DOMAIN}").delete()
    DunningCase.objects.filter(customer__email__endswith=f"@{BENCH_DOMAIN}").delete()
    Customer.objects.filter(email__endswith=f"@{BENCH_DOMAIN}").delete()
    opened = now - timedelta(days=1, minutes=5)
    customers = Customer.objects.bulk_create(
        [Customer(email=f"c{i}@{BENCH_DOMAIN}", name=f"Bench {i}", subscription_id=f"sub_bdun{i:08d}",
                  subscription_status="past_due", plan="pro", access_state="grace") for i in range(n)],
        batch_size=2000)
    cases = DunningCase.objects.bulk_create(
        [DunningCase(customer=c, policy=policy, invoice_id=f"in_bdun{i:08d}", subscription_id=c.subscription_id,
                     amount_due=900, currency="usd", hosted_invoice_url=f"https://invoice.stripe.test/i/{i}",
                     opened_at=opened, last_failure_at=opened, next_step_at=opened + timedelta(days=1))
         for i, c in enumerate(customers)], batch_size=2000)
    DunningStepLog.objects.bulk_create(
        [DunningStepLog(case=case, step_code="FAIL_IMMEDIATE", channel="email", template="payment_failed",
                        status="sent", attempts=1, due_at=opened, sent_at=opened) for case in cases], batch_size=2000)


def timed_run(fn):
    from django.db import connection
    from django.test.utils import CaptureQueriesContext

    with CaptureQueriesContext(connection) as queries:
        t0, cpu0 = time.monotonic(), time.process_time()
        result = fn()
        wall, cpu = time.monotonic() - t0, time.process_time() - cpu0
    return result, wall, cpu, len(queries.captured_queries)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--cases", type=int, default=10_000)
    parser.add_argument("--compare", type=int, default=1_000, help="a smaller run to compare the query count with")
    parser.add_argument("--batch", type=int, default=200)
    args = parser.parse_args()

    if not os.environ.get("DATABASE_URL"):  # `make bench` names its database BENCH_DATABASE_URL
        os.environ["DATABASE_URL"] = os.environ.get("BENCH_DATABASE_URL") or "postgres://postgres@127.0.0.1:5432/bc_bench"
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "billing_console.settings")
    os.environ["DEBUG"] = "false"
    os.environ.setdefault("CLOUD_MASTER_KEY", "bench-master-key-0123456789abcdef")
    import django

    django.setup()
    from django.conf import settings
    from django.core import mail
    from django.core.management import call_command
    from django.db import connection
    from django.utils import timezone

    if connection.vendor != "postgresql":
        print("bench_dunning needs PostgreSQL: set DATABASE_URL=postgres://...", file=sys.stderr)
        return 2
    call_command("migrate", verbosity=0)
    settings.EMAIL_BACKEND = "django.core.mail.backends.locmem.EmailBackend"
    settings.DUNNING_BATCH_SIZE = args.batch
    mail.outbox = []

    from billing_console.models import CronRun
    from dunning import tasks
    from dunning.models import Channel, DunningPolicy, DunningStep, DunningStepLog
    from dunning.services import dunning_enforce_access_policies

    policy, _ = DunningPolicy.objects.get_or_create(name="bench (email only)", defaults={"grace_days": 3, "hard_lock_days": 14})
    for code, offset, template in (("FAIL_IMMEDIATE", 0, "payment_failed"), ("SOFT_D+1", 1, "reminder"),
                                   ("SOFT_D+3", 3, "reminder")):
        DunningStep.objects.get_or_create(policy=policy, code=code,
                                          defaults={"offset_days": offset, "channel": Channel.EMAIL, "template": template})

    runs = {}
    for n in (args.compare, args.cases):
        now = timezone.now()
        t0 = time.monotonic()
        seed(n, policy, now)
        with connection.cursor() as cursor:  # fresh statistics, as autovacuum keeps them in production
            cursor.execute("ANALYZE dunning_dunningcase, dunning_dunningsteplog, billing_console_customer")
        setup = time.monotonic() - t0
        CronRun.objects.filter(name="dunning_send", status=CronRun.Status.RUNNING).delete()
        mail.outbox = []
        _, wall, cpu, queries = timed_run(tasks.dunning_send)
        counts = CronRun.objects.filter(name="dunning_send").order_by("-started_at").first().counts
        sent = DunningStepLog.objects.filter(case__customer__email__endswith=f"@{BENCH_DOMAIN}", step_code="SOFT_D+1",
                                             status="sent").count()
        enforce, enforce_wall, _, enforce_queries = timed_run(lambda: dunning_enforce_access_policies(now=now))
        batches = math.ceil(n / args.batch)
        # CPU seconds of this process: on a busy machine wall time also counts waiting for a core.
        runs[n] = {"cases": n, "wall_seconds": round(wall, 2), "cases_per_second": round(n / wall, 1),
                   "cpu_seconds": round(cpu, 2), "cases_per_cpu_second": round(n / cpu, 1),
                   "queries": queries, "queries_per_case": round(queries / n, 4), "batches": batches,
                   "queries_per_batch": round(queries / batches, 2), "counts": counts, "steps_sent": sent,
                   "emails": len(mail.outbox), "enforce_seconds": round(enforce_wall, 2),
                   "enforce_queries": enforce_queries, "enforce_checked": enforce["checked"],
                   "setup_seconds": round(setup, 1)}

    big, small = runs[args.cases], runs[args.compare]
    result = {"benchmark": "dunning", **big, "load_average_1m": round(os.getloadavg()[0], 2), "compare": small, "batch_size": args.batch, "database": "postgresql",
              "email_backend": "locmem", "cpus": os.cpu_count(), "at": timezone.now().isoformat(timespec="seconds")}
    bench_dir = ROOT / "var" / "bench"
    bench_dir.mkdir(parents=True, exist_ok=True)
    (bench_dir / "dunning.json").write_text(json.dumps(result, indent=2) + "\n")
    print(f"dunning: {big['cases']} open cases in {big['wall_seconds']} s = {big['cases_per_second']:.0f} cases/s "
          f"({big['cases_per_cpu_second']:.0f} per CPU second of this process, load {os.getloadavg()[0]:.1f}), "
          f"{big['queries']} queries ({big['queries_per_case']} per case, {big['queries_per_batch']} per batch of "
          f"{args.batch}; {small['cases']} cases: {small['queries']} queries, {small['queries_per_batch']} per batch), "
          f"{big['steps_sent']} sent, {big['emails']} emails; enforcement {big['enforce_seconds']} s, "
          f"{big['enforce_queries']} queries")
    ok = all(r["steps_sent"] == r["cases"] == r["emails"] for r in runs.values())
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
