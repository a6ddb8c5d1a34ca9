"""Webhook ingestion: acknowledged events/s and p99 of the console's /api/billing/webhook under 8
concurrent clients (10% duplicates, some reordered), against a bare Django view inserting one ~3 KB
JSON row on the same server in the same run; then the fully-applied rate (qcluster workers draining
the inbox) against stock dj-stripe 2.11 processing the same kind of events synchronously in its own
webhook view (WebhookEventTrigger: verify, store, re-read the object from the API, sync).

Everything on PostgreSQL and loopback: gunicorn gthread 2x4 with bench-only URLs
(bench/webhook_urls.py), the Stripe sandbox in its own process answering the API re-reads.
Events are `customer.updated` built from the fixtures3 customer and event shapes, padded to ~3 KB,
for customers that exist in the sandbox and in the console.

    .venv/bin/python bench/bench_webhooks.py [--events 1500] [--rounds 2] [--stock-events 600]
                                             [--clusters 1] [--workers 4] [--djstripe-sync none]

Targets (DESIGN.md): ack >= 1/3 of the bare insert rate with p99 < 250 ms; applied >= 2x stock.
Prints one line and writes var/bench/webhooks.json.
"""
import argparse
import copy
import hashlib
import hmac
import json
import os
import random
import statistics
import subprocess
import sys
import time
import uuid
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.harness import (  # noqa: E402
    OUT, PY, ROOT, Gunicorn, Request, bench_database_url, django_env, ensure_database, free_port, run_load, stop,
    wait_port, write_result,
)

API_KEY = "sk_test_bench" + "W3bh00kB3nch0123456789ab"
SECRET = "whsec_bench" + "Q7s9d2LkPz4mX8vN1cR6tY0w"
FIXTURES = Path(__file__).resolve().parents[2] / "shared" / "stripe" / "fixtures3.json"
FIXTURES_FALLBACK = ROOT / "sandbox" / "stripe" / "fixtures3.json"


def shapes() -> tuple[dict, dict]:
    path = FIXTURES if FIXTURES.exists() else FIXTURES_FALLBACK
    resources = json.loads(path.read_text())["resources"]
    return resources["event"], resources["customer"]


def sign(body: bytes, timestamp: int) -> str:
    mac = hmac.new(SECRET.encode(), f"{timestamp}.".encode() + body, hashlib.sha256).hexdigest()
    return f"t={timestamp},v1={mac}"


def build_events(prefix: str, n: int, customers: list[dict], start_created: int) -> list[dict]:
    """n customer.updated events, round-robin over the customers, each a newer version (name)."""
    event_shape, customer_shape = shapes()
    events = []
    for i in range(n):
        c = customers[i % len(customers)]
        obj = copy.deepcopy(customer_shape)
        obj.update(id=c["id"], email=c["email"], name=f"{c['name']} v{i // len(customers)}", created=c["created"],
                   discount=None,  # the emulator's customers carry none (dj-stripe 2.11 cannot parse the new shape)
                   metadata={f"note{k}": (f"{prefix}-{i}-{k}-" * 40)[:450] for k in range(4)})
        event = copy.deepcopy(event_shape)
        event.update(id=f"evt_{prefix}{i:07d}", api_version="2026-05-27.dahlia", created=start_created + i,
                     type="customer.updated", pending_webhooks=1,
                     data={"object": obj, "previous_attributes": {"name": c["name"]}})
        events.append(event)
    return events


def deliveries(events: list[dict], *, duplicates: float, reorder: float, rng: random.Random) -> list[dict]:
    """The delivery sequence: `duplicates` of the requests are re-sends of an earlier event (which may
    race with the first on another client), and `reorder` of adjacent pairs are swapped."""
    seq = list(events)
    n_dup = round(len(events) * duplicates / (1 - duplicates))
    for _ in range(n_dup):
        i = rng.randrange(len(seq))
        seq.insert(min(len(seq), i + rng.randint(1, 16)), seq[i])
    for i in range(0, len(seq) - 1, 2):
        if rng.random() < reorder * 2:
            seq[i], seq[i + 1] = seq[i + 1], seq[i]
    return seq


def encode(path: str, events: list[dict], clients: int, *, signed: bool = True) -> list[list[bytes]]:
    """Pre-encoded requests, dealt round-robin to the clients."""
    now = int(time.time())
    per_client: list[list[bytes]] = [[] for _ in range(clients)]
    for i, event in enumerate(events):
        body = json.dumps(event, separators=(",", ":")).encode()
        headers = {"Content-Type": "application/json"}
        if signed:
            headers["Stripe-Signature"] = sign(body, now)
        per_client[i % clients].append(Request("POST", path, body, headers).encode())
    return per_client


def start_emulator() -> tuple[subprocess.Popen, str]:
    port = free_port()
    proc = subprocess.Popen([PY, "-m", "sandbox.stripe", "serve", "--port", str(port)], cwd=ROOT,
                            stdout=(OUT / "emulator.log").open("ab"), stderr=subprocess.STDOUT)
    wait_port(port, proc)
    return proc, f"http://127.0.0.1:{port}"


def reset_tables() -> None:
    from django.db import connection

    with connection.cursor() as cur:
        cur.execute("CREATE TABLE IF NOT EXISTS bench_insert (id bigserial PRIMARY KEY, payload jsonb NOT NULL)")
        cur.execute("TRUNCATE bench_insert, billing_console_webhookevent, django_q_ormq, django_q_task, "
                    "djstripe_webhookeventtrigger, djstripe_event, billing_console_auditevent")
        cur.execute("TRUNCATE billing_console_customer RESTART IDENTITY CASCADE")


def seed(emu_url: str, n: int) -> tuple[list[dict], str]:
    """n customers in the sandbox and in the console; dj-stripe's endpoint row for the stock view."""
    import stripe
    from djstripe.models import WebhookEndpoint

    from billing_console.models import Customer

    client = stripe.StripeClient(API_KEY, base_addresses={"api": emu_url}, max_network_retries=0)
    customers = []
    for i in range(n):
        c = client.v1.customers.create(params={"email": f"hook{i}@example.com", "name": f"Hook Customer {i}"})
        customers.append({"id": c.id, "email": c.email, "name": c.name, "created": c.created})
    Customer.objects.bulk_create([Customer(email=c["email"], name=c["name"], stripe_customer_id=c["id"])
                                  for c in customers])
    WebhookEndpoint.objects.filter(id="we_bench").delete()
    endpoint = WebhookEndpoint.objects.create(
        id="we_bench", livemode=False, api_version="2026-05-27.dahlia", enabled_events=["*"], secret=SECRET,
        status="enabled", url="http://127.0.0.1/bench/djstripe/", djstripe_uuid=uuid.uuid4(), stripe_data={})
    return customers, str(endpoint.djstripe_uuid)


def drain(env: dict, total: int, clusters: int, timeout: float) -> dict:
    """Start the qclusters and wait until every stored event is processed (or failed)."""
    from django.db import connection
    from django.db.models import Count, Max, Min

    from billing_console.models import WebhookEvent

    procs = []
    started = time.perf_counter()
    for i in range(clusters):
        procs.append(subprocess.Popen([PY, "manage.py", "qcluster"], cwd=ROOT, env=env,
                                      stdout=(OUT / f"qcluster{i}.log").open("ab"), stderr=subprocess.STDOUT))
    try:
        while time.perf_counter() - started < timeout:
            done = WebhookEvent.objects.filter(status__in=["processed", "ignored", "failed"]).count()
            connection.close()
            if done >= total:
                break
            time.sleep(0.25)
        wall = time.perf_counter() - started
        # dj-stripe's mirror runs in its own tasks after each event is applied: wait for it too, to read its lag.
        while time.perf_counter() - started < timeout and WebhookEvent.objects.filter(mirror="due").exists():
            connection.close()
            time.sleep(0.25)
    finally:
        for proc in procs:
            stop(proc)
    statuses = dict(WebhookEvent.objects.values_list("status").annotate(n=Count("pk")))
    span = WebhookEvent.objects.filter(status="processed").aggregate(first=Min("processed_at"), last=Max("processed_at"))
    active = (span["last"] - span["first"]).total_seconds() if span["first"] else 0
    processed = statuses.get("processed", 0)
    errors = list(WebhookEvent.objects.filter(status="failed").values_list("last_error", flat=True)[:3])
    from billing_console.stripe.mirror import mirror_lag_seconds

    mirror = {k: (round(v, 2) if isinstance(v, float) else v) for k, v in mirror_lag_seconds().items()}
    mirror["failed"] = WebhookEvent.objects.filter(mirror="failed").count()
    return {"events": total, "statuses": statuses, "wall_s": round(wall, 2), "active_s": round(active, 2),
            "mirror": mirror,
            "per_second": round(processed / active, 1) if active else 0.0,
            "per_second_wall": round(processed / wall, 1) if wall else 0.0, "sample_errors": errors}


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--customers", type=int, default=200)
    parser.add_argument("--events", type=int, default=1500, help="unique events per ack round")
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--bare-seconds", type=float, default=8.0)
    parser.add_argument("--stock-events", type=int, default=600)
    parser.add_argument("--clients", type=int, default=8)
    parser.add_argument("--clusters", type=int, default=1)
    parser.add_argument("--workers", type=int, default=4, help="django-q2 workers per cluster")
    parser.add_argument("--duplicates", type=float, default=0.10)
    parser.add_argument("--reorder", type=float, default=0.05)
    parser.add_argument("--drain-timeout", type=float, default=600)
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--djstripe-sync", default="", help="STRIPE_DJSTRIPE_SYNC of the console (default: its own)")
    args = parser.parse_args()
    rng = random.Random(args.seed)

    url = bench_database_url()
    ensure_database(url)
    OUT.mkdir(parents=True, exist_ok=True)
    emulator, emu_url = start_emulator()
    env = django_env(url, DJANGO_SETTINGS_MODULE="bench.webhook_settings", STRIPE_SECRET_KEY=API_KEY,
                     STRIPE_WEBHOOK_SECRET=SECRET, STRIPE_API_HOST=emu_url, ALLOWED_HOSTS="127.0.0.1,localhost",
                     CLOUD_MASTER_KEY="bench-master-key-0123456789abcdef", Q_WORKERS=str(args.workers),
                     **({"STRIPE_DJSTRIPE_SYNC": args.djstripe_sync} if args.djstripe_sync else {}))
    os.environ.update(env)
    import django

    django.setup()
    try:
        reset_tables()
        customers, endpoint_uuid = seed(emu_url, args.customers)
        base_created = int(time.time()) - 3600
        rounds_bare, rounds_ack = [], []
        unique_total = 0
        with Gunicorn(env) as server:
            warm = build_events("warm", 80, customers, base_created - 1000)
            run_load(server.port, encode("/api/billing/webhook", warm, args.clients))
            run_load(server.port, encode("/bench/insert", warm, args.clients, signed=False), repeat_for=1.0)
            unique_total += len(warm)
            for r in range(args.rounds):
                events = build_events(f"r{r}_", args.events, customers, base_created + r * args.events)
                unique_total += len(events)
                bare = run_load(server.port, encode("/bench/insert", events, args.clients, signed=False),
                                repeat_for=args.bare_seconds)
                ack = run_load(server.port, encode("/api/billing/webhook",
                                                   deliveries(events, duplicates=args.duplicates, reorder=args.reorder,
                                                              rng=rng), args.clients))
                rounds_bare.append(bare)
                rounds_ack.append(ack)
            stock_events = build_events("stock", args.stock_events, customers, base_created + 10 ** 6)
            stock = run_load(server.port, encode(f"/bench/djstripe/{endpoint_uuid}/", stock_events, args.clients))
        applied = drain(env, unique_total, args.clusters, args.drain_timeout)
    finally:
        stop(emulator)

    bare_rate = statistics.median(b.rate for b in rounds_bare)
    ack_rate = statistics.median(a.rate for a in rounds_ack)
    ack_p99 = statistics.median(a.pct(99) for a in rounds_ack) * 1000
    ratio = ack_rate / bare_rate if bare_rate else 0.0
    applied_ratio = applied["per_second"] / stock.rate if stock.rate else 0.0
    result = {
        "config": vars(args), "server": "gunicorn gthread 2 workers x 4 threads", "unique_events": unique_total,
        "bare_insert": [b.summary() for b in rounds_bare], "ack": [a.summary() for a in rounds_ack],
        "stock_djstripe": stock.summary(), "applied": applied,
        "figures": {"bare_insert_per_s": round(bare_rate, 1), "ack_per_s": round(ack_rate, 1),
                    "ack_p99_ms": round(ack_p99, 1), "ack_to_bare": round(ratio, 2),
                    "stock_djstripe_per_s": round(stock.rate, 1), "stock_djstripe_p99_ms": round(stock.pct(99) * 1000, 1),
                    "applied_per_s": applied["per_second"], "applied_to_stock": round(applied_ratio, 2)},
        "targets": {"ack_to_bare_min": 1 / 3, "ack_p99_ms_max": 250, "applied_to_stock_min": 2.0},
        "met": {"ack": ratio >= 1 / 3 and ack_p99 < 250, "applied": applied_ratio >= 2.0},
    }
    write_result("webhooks", result)
    print(f"webhooks: ack {ack_rate:.0f}/s p99 {ack_p99:.0f} ms = {ratio:.2f}x bare insert {bare_rate:.0f}/s "
          f"(target >= 0.33, p99 < 250); applied {applied['per_second']:.0f}/s = {applied_ratio:.2f}x stock dj-stripe "
          f"{stock.rate:.0f}/s p99 {stock.pct(99) * 1000:.0f} ms (target >= 2x); dj-stripe mirror lag {applied['mirror']}")


if __name__ == "__main__":
    main()
