"""Hourly push benchmark: N deployments (bulk-created) pushed to the fake Cloudflare with a fixed latency per call.

    .venv/bin/python bench/bench_push.py [--deployments 10000] [--latency-ms 50] [--concurrency 32]
    (database: BENCH_DATABASE_URL, else DATABASE_URL, else bench/harness.py's default; `make bench` runs it)

Prints one figure line (wall time against the bound N x latency / concurrency, peak RSS) and writes
var/bench/push.json. The fake Cloudflare runs in its own process, as the real API would be elsewhere, so its
Python does not share this process's GIL. The database must be PostgreSQL; it is migrated if needed, and
the benchmark's own rows (emails ending @bench.push) are replaced on every run.
"""
from __future__ import annotations

import argparse
import json
import multiprocessing
import os
import sys
import threading
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
BENCH_DOMAIN = "bench.push"


def token_for(i: int) -> str:
    return f"benchTok{i:08d}" + "x" * 24


def account_for(i: int) -> str:
    return f"{i:032x}"


def fake_cloudflare(n: int, latency: float, conn) -> None:
    """Child process: serve the fake API with every benchmark token registered; answer upload counts on request."""
    from sandbox.cloudflare import FakeCloudflare

    fake = FakeCloudflare().start()
    for i in range(n):
        fake.add_token(token_for(i), account_for(i))
    fake.set_latency(latency)
    conn.send(fake.url)
    while True:
        command = conn.recv()
        if command == "uploads":
            uploads = fake.uploads
            conn.send({"uploads": len(uploads), "distinct": len({(u.account_id, u.script_name) for u in uploads})})
        elif command == "cpu":
            import resource

            usage = resource.getrusage(resource.RUSAGE_SELF)
            conn.send(usage.ru_utime + usage.ru_stime)
        elif command == "stop":
            fake.stop()
            conn.send("stopped")
            return


def rss_mb() -> float:
    with open("/proc/self/status") as fh:
        for line in fh:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    return 0.0


class RssSampler(threading.Thread):
    def __init__(self, every: float = 0.25):
        super().__init__(daemon=True)
        self.every, self.samples, self._stop_event = every, [], threading.Event()

    def run(self):
        start = time.monotonic()
        while not self._stop_event.is_set():
            self.samples.append((round(time.monotonic() - start, 2), round(rss_mb(), 1)))
            self._stop_event.wait(self.every)

    def stop(self):
        self._stop_event.set()
        self.join()


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--deployments", type=int, default=10_000)
    parser.add_argument("--latency-ms", type=float, default=50.0)
    parser.add_argument("--concurrency", type=int, default=32)
    parser.add_argument("--bundle-kb", type=int, default=8)
    args = parser.parse_args()
    n, latency, concurrency = args.deployments, args.latency_ms / 1000, args.concurrency

    from bench.harness import bench_database_url

    # `make bench` names the database in BENCH_DATABASE_URL (default bc_bench); an explicit DATABASE_URL also works.
    os.environ["DATABASE_URL"] = os.environ.get("BENCH_DATABASE_URL") or os.environ.get("DATABASE_URL") or bench_database_url()
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "billing_console.settings")
    os.environ["DEBUG"] = "false"  # DEBUG keeps every SQL statement in memory: not what production runs
    os.environ.setdefault("CLOUD_MASTER_KEY", "bench-master-key-0123456789abcdef")
    import django

    django.setup()
    from django.conf import settings
    from django.core.management import call_command
    from django.db import connection

    if connection.vendor != "postgresql":
        print("bench_push needs PostgreSQL: set DATABASE_URL=postgres://...", file=sys.stderr)
        return 2
    call_command("migrate", verbosity=0)

    parent, child = multiprocessing.Pipe()
    server = multiprocessing.get_context("spawn").Process(target=fake_cloudflare, args=(n, latency, child), daemon=True)
    server.start()
    cloudflare_url = parent.recv()

    from sandbox.bundles import BundleHost

    bench_dir = ROOT / "var" / "bench"
    bundle_root = bench_dir / "push-bundles"
    host = BundleHost(bundle_root)
    version = f"bench-{int(time.time())}"
    body = b"export default { async fetch() { return new Response('bench'); } };\n"
    host.publish(version, body + b"//" + b"x" * max(0, args.bundle_kb * 1024 - len(body) - 3) + b"\n")

    settings.CLOUDFLARE_API_BASE = f"{cloudflare_url}/client/v4"
    settings.HELM_BUNDLE_MANIFEST_URL = host.manifest_file_url()
    settings.DEPLOY_PUSH_CONCURRENCY = concurrency

    from datetime import timedelta

    from django.utils import timezone

    from billing_console.models import CronRun, Customer
    from deployments import tasks
    from deployments.models import Deployment, PublishVersion

    t0 = time.monotonic()
    Customer.objects.filter(email__endswith=f"@{BENCH_DOMAIN}").delete()  # cascades to deployments and publishes
    period_end = timezone.now() + timedelta(days=20)
    customers = Customer.objects.bulk_create(
        [Customer(email=f"c{i}@{BENCH_DOMAIN}", subscription_id=f"sub_bench{i:08d}", subscription_status="active",
                  plan="pro", price_id="price_bench", current_period_end=period_end) for i in range(n)], batch_size=2000)
    deployments = []
    for i, customer in enumerate(customers):
        d = Deployment(customer=customer, account_id=account_for(i), script_name="helm")
        d.api_token = token_for(i)
        d.token_last4 = token_for(i)[-4:]
        deployments.append(d)
    Deployment.objects.bulk_create(deployments, batch_size=2000)
    del customers, deployments
    setup_seconds = time.monotonic() - t0

    CronRun.objects.filter(name="push_deployments", status=CronRun.Status.RUNNING).delete()
    rss_before = rss_mb()
    parent.send("cpu")
    fake_cpu0 = parent.recv()
    sampler = RssSampler()
    sampler.start()
    cpu0, t0 = time.process_time(), time.monotonic()
    counts = tasks.push_deployments()
    wall, console_cpu = time.monotonic() - t0, time.process_time() - cpu0
    sampler.stop()
    parent.send("cpu")
    fake_cpu = parent.recv() - fake_cpu0
    load = os.getloadavg()[0]

    parent.send("uploads")
    uploaded = parent.recv()
    parent.send("stop")
    parent.recv()
    server.join(5)

    live = PublishVersion.objects.filter(deployment__customer__email__endswith=f"@{BENCH_DOMAIN}", version=version,
                                         status=PublishVersion.Status.LIVE).count()
    bound = n * latency / concurrency
    rss = [mb for _, mb in sampler.samples]
    quarter = [rss[min(len(rss) - 1, int(len(rss) * q))] for q in (0.25, 0.5, 0.75)] + [rss[-1]] if rss else []
    result = {
        "benchmark": "push",
        "deployments": n,
        "latency_ms": args.latency_ms,
        "concurrency": concurrency,
        "bundle_bytes": (bundle_root / "bundles" / version / "worker.mjs").stat().st_size,
        "wall_seconds": round(wall, 2),
        "bound_seconds": round(bound, 2),
        "ratio_to_bound": round(wall / bound, 3),
        "pushes_per_second": round(n / wall, 1),
        "pushed": counts.get("pushed") if counts else None,
        "failed": counts.get("failed") if counts else None,
        "live_publishes": live,
        "uploads_seen_by_fake": uploaded,
        "rss_mb_before": round(rss_before, 1),
        "rss_mb_peak": max(rss) if rss else None,
        "rss_mb_at_25_50_75_100pct": quarter,
        # CPU per push does not depend on how busy the machine is; the wall time does (see load_average_1m).
        "console_cpu_ms_per_push": round(console_cpu / n * 1000, 3),
        "fake_cloudflare_cpu_ms_per_push": round(fake_cpu / n * 1000, 3),
        "load_average_1m": round(load, 2),
        "setup_seconds": round(setup_seconds, 1),
        "database": "postgresql",
        "cpus": os.cpu_count(),
        "at": timezone.now().isoformat(timespec="seconds"),
    }
    bench_dir.mkdir(parents=True, exist_ok=True)
    (bench_dir / "push.json").write_text(json.dumps(result, indent=2) + "\n")
    print(f"push: {n} deployments in {wall:.2f} s (bound {bound:.2f} s = {n} x {args.latency_ms:g} ms / {concurrency}; "
          f"ratio {wall / bound:.2f}), {n / wall:.0f} pushes/s, peak RSS {result['rss_mb_peak']} MB "
          f"(before {rss_before:.0f} MB), console CPU {console_cpu / n * 1000:.2f} ms/push, load {load:.1f}, uploads {uploaded['uploads']}/{uploaded['distinct']} distinct, live {live}")
    ok = uploaded["uploads"] == n == uploaded["distinct"] == live
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
