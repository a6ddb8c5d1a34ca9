"""Webhook ingestion: acknowledged events/s and p99 of the console's /api/billing/webhook under 8
concurrent clients (10% duplicates, some reordered), against a bare Django view inserting one ~3 KB
JSON row on the same server in the same run, at 1, 2 and 4 gunicorn workers; then the fully-applied
rate (qcluster workers draining the inbox) against stock dj-stripe 2.11 processing the same kind of
events synchronously in its own webhook view (WebhookEventTrigger: verify, store, re-read the object
from the API, sync); the applied rate at 1 and 2 qclusters, and with a million applied rows already
in the inbox (against the same run's rate without them); and the RSS of every gunicorn and qcluster
worker after --rss-events events acknowledged and applied. Each applied phase then waits for dj-stripe's
mirror (its own background task, off the applied path) and reports its lag: mirrored_at - processed_at
per event, under the drain's load.

Everything on PostgreSQL and loopback: gunicorn gthread Nx4 with bench-only URLs
(bench/webhook_urls.py), the Stripe sandbox in its own process answering the API re-reads.
Events are `customer.updated` built from the fixtures3 customer and event shapes, padded to ~3 KB,
for customers that exist in the sandbox and in the console. The million filler rows are applied
`customer.updated` events of the same customers with a small payload (the indexes, not the payload
bytes, are what a claim or an INSERT meets).

    .venv/bin/python bench/bench_webhooks.py [--events 1500] [--rounds 2] [--stock-events 600]
        [--web-workers 1,2,4] [--workers 4] [--apply-events 3000] [--inbox-rows 1000000]
        [--rss-events 100000]      (--inbox-rows 0 / --rss-events 0 skip those phases)

Targets (issue 22): ack >= 0.6x the bare insert with p99 < 100 ms (at 2 gunicorn workers, the
deployment default); applied >= 3x stock; with a million rows, applied within 10%.
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
from bench.rss import rss_of_children  # noqa: E402

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


def clear_task_flags() -> None:
    """No cluster runs between phases: a mirror kick or run flag a stopped cluster left in the cache (the
    database cache, which TRUNCATE does not empty) would hold the next phase's mirror for minutes. In
    production the minute cron clears them; the bench has no cron."""
    from django.core.cache import cache

    from billing_console.stripe.mirror import DEFERRED_KEY, KICK_KEY, RUNNING_KEY

    cache.delete_many([KICK_KEY, RUNNING_KEY, DEFERRED_KEY])


def reset_tables() -> None:
    from django.db import connection

    clear_task_flags()

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


class Clusters:
    """n `manage.py qcluster` processes, stopped on exit."""

    def __init__(self, env: dict, n: int):
        self.env, self.n, self.procs = env, n, []

    def __enter__(self) -> "Clusters":
        self.procs = [subprocess.Popen([PY, "manage.py", "qcluster"], cwd=ROOT, env=self.env,
                                       stdout=(OUT / f"qcluster{i}.log").open("ab"), stderr=subprocess.STDOUT)
                      for i in range(self.n)]
        return self

    def rss(self) -> list[float]:
        return sorted((r for proc in self.procs for r in rss_of_children(proc.pid)), reverse=True)

    def __exit__(self, *exc) -> None:
        for proc in self.procs:
            stop(proc)


def wait_applied(total: int, timeout: float, started: float) -> float:
    """Until `total` events of the inbox are processed or failed; returns the wall seconds."""
    from django.db import connection

    from billing_console.models import WebhookEvent

    while time.perf_counter() - started < timeout:
        done = WebhookEvent.objects.filter(status__in=["processed", "failed"]).count()
        connection.close()
        if done >= total:
            break
        time.sleep(0.25)
    return time.perf_counter() - started


def applied_figures(total: int, wall: float, since) -> dict:
    """The rate over the processed_at span of the events applied after `since`."""
    from django.db.models import Count, Max, Min

    from billing_console.models import WebhookEvent

    batch = WebhookEvent.objects.filter(received_at__gte=since)
    statuses = dict(batch.values_list("status").annotate(n=Count("pk")).order_by())
    span = batch.filter(status="processed").aggregate(first=Min("processed_at"), last=Max("processed_at"))
    active = (span["last"] - span["first"]).total_seconds() if span["first"] else 0
    processed = statuses.get("processed", 0)
    errors = list(batch.filter(status="failed").values_list("last_error", flat=True)[:3])
    return {"events": total, "statuses": statuses, "wall_s": round(wall, 2), "active_s": round(active, 2),
            "per_second": round(processed / active, 1) if active else 0.0,
            "per_second_wall": round(processed / wall, 1) if wall else 0.0, "sample_errors": errors}


def wait_mirrored(timeout: float) -> float:
    """Until no applied event waits for dj-stripe's mirror (its own task, after the apply); returns seconds."""
    from django.db import connection

    from billing_console.models import WebhookEvent

    started = time.perf_counter()
    while time.perf_counter() - started < timeout:
        due = WebhookEvent.objects.filter(mirror=WebhookEvent.Mirror.DUE).exists()
        connection.close()
        if not due:
            break
        time.sleep(0.25)
    return time.perf_counter() - started


def drain(env: dict, clusters: int, timeout: float, since) -> dict:
    """Start the qclusters and wait until every stored event is processed (or failed), then until the
    mirror has caught up; the applied rate is over the processed_at span, the mirror's lag per event."""
    from billing_console.models import WebhookEvent
    from billing_console.stripe.mirror import mirror_lag_seconds

    total = WebhookEvent.objects.count()
    clear_task_flags()
    started = time.perf_counter()
    with Clusters(env, clusters) as running:
        wall = wait_applied(total, timeout, started)
        rss = running.rss()
        mirror_wait = wait_mirrored(timeout)
    lag = {k: round(v, 2) if isinstance(v, float) else v for k, v in mirror_lag_seconds(since=since).items()}
    return {**applied_figures(total - WebhookEvent.objects.filter(received_at__lt=since).count(), wall, since),
            "clusters": clusters, "rss_mib": rss, "mirror_lag_s": lag,
            "mirror_after_applied_s": round(mirror_wait, 2)}


def store_direct(events: list[dict]) -> None:
    """Store events as the webhook view does (and wake the drain), without HTTP: the applied phases
    measure the workers, not the acknowledgement."""
    from billing_console.stripe.inbox import webhook_event_store

    for event in events:
        webhook_event_store(event=event)


def fill_inbox(rows: int, customers: list[dict], start_created: int) -> float:
    """`rows` applied customer.updated events of the bench's customers, copied in SQL from one template
    row (every column the model has, whatever they are), then ANALYZE. Returns the seconds taken."""
    from django.db import connection
    from django.utils import timezone

    from billing_console.models import WebhookEvent

    started = time.perf_counter()
    template = WebhookEvent.objects.create(
        stripe_id="evt_fill_template", type="customer.updated", api_version="2026-05-27.dahlia",
        stripe_created=timezone.now(), object_id=customers[0]["id"], status="processed", attempts=1,
        processed_at=timezone.now(), payload={"id": "evt_fill", "object": "event", "type": "customer.updated"})
    columns = [f.column for f in WebhookEvent._meta.concrete_fields if not f.primary_key]
    ids = [c["id"] for c in customers]
    generated = {"stripe_id": ("'evt_fill' || g", []), "object_id": ("(%s::text[])[1 + g %% %s]", [ids, len(ids)]),
                 "stripe_created": ("to_timestamp(%s + g)", [start_created - rows])}
    select, params = [], []
    for column in columns:
        sql, values = generated.get(column, (f"t.{connection.ops.quote_name(column)}", []))
        select.append(sql)
        params += values
    with connection.cursor() as cur:
        cur.execute(f"INSERT INTO {WebhookEvent._meta.db_table} ({', '.join(connection.ops.quote_name(c) for c in columns)}) "
                    f"SELECT {', '.join(select)} FROM {WebhookEvent._meta.db_table} t, generate_series(1, %s) g "
                    f"WHERE t.id = %s", [*params, rows, template.pk])
        cur.execute(f"ANALYZE {WebhookEvent._meta.db_table}")
    template.delete()
    return time.perf_counter() - started


def rss_phase(env: dict, customers: list[dict], n: int, clients: int, clusters: int, base_created: int,
              timeout: float) -> dict:
    """`n` events acknowledged through gunicorn (2 workers) while the qclusters apply them; the RSS of
    every worker when they start and after the last one is applied."""
    from django.utils import timezone

    from billing_console.models import WebhookEvent

    since = timezone.now()
    before_total = WebhookEvent.objects.count()
    events = build_events("rss_", n, customers, base_created)
    clear_task_flags()
    started = time.perf_counter()
    with Gunicorn(env) as server, Clusters(env, clusters) as running:
        time.sleep(3)  # imports done
        rss_start = {"gunicorn": rss_of_children(server.proc.pid), "qcluster": running.rss()}
        ack = run_load(server.port, encode("/api/billing/webhook", events, clients))
        stored = WebhookEvent.objects.count()  # a refused delivery is never stored: wait for what was
        wall = wait_applied(stored, timeout, started)
        rss_end = {"gunicorn": rss_of_children(server.proc.pid), "qcluster": running.rss()}
    return {"events": n, "stored": stored - before_total, "ack": ack.summary(),
            "applied": applied_figures(stored - before_total, wall, since),
            "rss_mib_start": rss_start, "rss_mib_end": rss_end}


def ratio(a: float, b: float) -> float:
    return round(a / b, 2) if b else 0.0


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--customers", type=int, default=200)
    parser.add_argument("--events", type=int, default=1500, help="unique events per ack round")
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--bare-seconds", type=float, default=8.0)
    parser.add_argument("--stock-events", type=int, default=600)
    parser.add_argument("--clients", type=int, default=8)
    parser.add_argument("--web-workers", default="1,2,4", help="gunicorn worker counts for the ack rounds")
    parser.add_argument("--workers", type=int, default=4, help="django-q2 workers per cluster")
    parser.add_argument("--apply-events", type=int, default=3000, help="events per applied phase (1/2 clusters)")
    parser.add_argument("--inbox-rows", type=int, default=1_000_000, help="applied rows already in the inbox")
    parser.add_argument("--rss-events", type=int, default=100_000)
    parser.add_argument("--duplicates", type=float, default=0.10)
    parser.add_argument("--reorder", type=float, default=0.05)
    parser.add_argument("--drain-timeout", type=float, default=600)
    parser.add_argument("--seed", type=int, default=7)
    args = parser.parse_args()
    rng = random.Random(args.seed)
    web_workers = [int(w) for w in args.web_workers.split(",")]

    url = bench_database_url()
    ensure_database(url)
    OUT.mkdir(parents=True, exist_ok=True)
    emulator, emu_url = start_emulator()
    env = django_env(url, DJANGO_SETTINGS_MODULE="bench.webhook_settings", STRIPE_SECRET_KEY=API_KEY,
                     STRIPE_WEBHOOK_SECRET=SECRET, STRIPE_API_HOST=emu_url, ALLOWED_HOSTS="127.0.0.1,localhost",
                     CLOUD_MASTER_KEY="bench-master-key-0123456789abcdef", Q_WORKERS=str(args.workers),
                     # Every request is signed before the load starts; the 100,000-event phase outlasts Stripe's
                     # 300 s tolerance on a slow run (the late ones were 400s and never stored). The check's cost
                     # is the same at any tolerance.
                     STRIPE_WEBHOOK_TOLERANCE="86400")
    os.environ.update(env)
    import django

    django.setup()
    from django.utils import timezone

    by_workers: dict[int, dict] = {}
    applied_phases: dict[str, dict] = {}
    try:
        reset_tables()
        customers, endpoint_uuid = seed(emu_url, args.customers)
        base_created = int(time.time()) - 3600
        run_start = timezone.now()
        for w in web_workers:
            rounds_bare, rounds_ack = [], []
            with Gunicorn(env, workers=w) as server:
                warm = build_events(f"warm{w}_", 80, customers, base_created - 1000)
                run_load(server.port, encode("/api/billing/webhook", warm, args.clients))
                run_load(server.port, encode("/bench/insert", warm, args.clients, signed=False), repeat_for=1.0)
                for r in range(args.rounds):
                    events = build_events(f"w{w}r{r}_", args.events, customers, base_created + r * args.events)
                    bare = run_load(server.port, encode("/bench/insert", events, args.clients, signed=False),
                                    repeat_for=args.bare_seconds)
                    ack = run_load(server.port, encode("/api/billing/webhook",
                                                       deliveries(events, duplicates=args.duplicates,
                                                                  reorder=args.reorder, rng=rng), args.clients))
                    rounds_bare.append(bare)
                    rounds_ack.append(ack)
                if w == 2:
                    stock_events = build_events("stock", args.stock_events, customers, base_created + 10 ** 6)
                    stock = run_load(server.port, encode(f"/bench/djstripe/{endpoint_uuid}/", stock_events,
                                                         args.clients))
            bare_rate = statistics.median(b.rate for b in rounds_bare)
            ack_rate = statistics.median(a.rate for a in rounds_ack)
            by_workers[w] = {"bare_insert_per_s": round(bare_rate, 1), "ack_per_s": round(ack_rate, 1),
                             "ack_p99_ms": round(statistics.median(a.pct(99) for a in rounds_ack) * 1000, 1),
                             "ack_to_bare": ratio(ack_rate, bare_rate),
                             "rounds": {"bare": [b.summary() for b in rounds_bare],
                                        "ack": [a.summary() for a in rounds_ack]}}
        # Everything the ack rounds stored, drained by one cluster: the headline applied rate.
        applied = drain(env, 1, args.drain_timeout, run_start)
        for clusters in (1, 2):
            since = timezone.now()
            store_direct(build_events(f"c{clusters}_", args.apply_events, customers, base_created + 2 * 10 ** 6))
            applied_phases[f"clusters_{clusters}"] = drain(env, clusters, args.drain_timeout, since)
        if args.inbox_rows:
            fill_seconds = fill_inbox(args.inbox_rows, customers, base_created - 10 ** 7)
            since = timezone.now()
            store_direct(build_events("full_", args.apply_events, customers, base_created + 3 * 10 ** 6))
            applied_phases["inbox_full"] = {**drain(env, 1, args.drain_timeout, since),
                                            "inbox_rows": args.inbox_rows, "fill_s": round(fill_seconds, 1)}
        rss = (rss_phase(env, customers, args.rss_events, args.clients, 1, base_created + 4 * 10 ** 6,
                         args.drain_timeout * 3) if args.rss_events else None)
    finally:
        stop(emulator)

    main_w = 2 if 2 in by_workers else web_workers[0]
    headline = by_workers[main_w]
    applied_ratio = ratio(applied["per_second"], stock.rate)
    one, two = applied_phases["clusters_1"]["per_second"], applied_phases["clusters_2"]["per_second"]
    full = applied_phases.get("inbox_full", {}).get("per_second")
    figures = {"bare_insert_per_s": headline["bare_insert_per_s"], "ack_per_s": headline["ack_per_s"],
               "ack_p99_ms": headline["ack_p99_ms"], "ack_to_bare": headline["ack_to_bare"],
               "stock_djstripe_per_s": round(stock.rate, 1), "stock_djstripe_p99_ms": round(stock.pct(99) * 1000, 1),
               "applied_per_s": applied["per_second"], "applied_to_stock": applied_ratio,
               "ack_by_gunicorn_workers": {w: {k: v for k, v in f.items() if k != "rounds"} for w, f in by_workers.items()},
               "applied_1_cluster_per_s": one, "applied_2_clusters_per_s": two, "two_to_one_cluster": ratio(two, one),
               "applied_with_full_inbox_per_s": full, "full_to_empty_inbox": ratio(full, one) if full else None,
               "mirror_lag_s": applied["mirror_lag_s"], "mirror_after_applied_s": applied["mirror_after_applied_s"]}
    if rss:
        figures["rss_mib_after"] = rss["rss_mib_end"]
    met = {"ack": headline["ack_to_bare"] >= 0.6 and headline["ack_p99_ms"] < 100,
           "applied": applied_ratio >= 3.0, "full_inbox": None if full is None else full >= 0.9 * one}
    result = {
        "config": vars(args), "server": f"gunicorn gthread {web_workers} workers x 4 threads", "by_workers": by_workers,
        "stock_djstripe": stock.summary(), "applied": applied, "applied_phases": applied_phases, "rss": rss,
        "figures": figures, "targets": {"ack_to_bare_min": 0.6, "ack_p99_ms_max": 100, "applied_to_stock_min": 3.0,
                                        "full_to_empty_inbox_min": 0.9},
        "met": met, "loadavg": os.getloadavg(),
    }
    refused: dict[str, int] = {}
    for summary in [a for f in by_workers.values() for a in f["rounds"]["ack"]] + ([rss["ack"]] if rss else []):
        for status, count in summary["statuses"].items():
            if status != "200":
                refused[status] = refused.get(status, 0) + count
    result["refused"] = refused
    write_result("webhooks", result)
    scaling = ", ".join(f"{w}w {f['ack_per_s']:.0f}/s {f['ack_to_bare']:.2f}x" for w, f in by_workers.items())
    print(f"webhooks: ack {headline['ack_per_s']:.0f}/s p99 {headline['ack_p99_ms']:.0f} ms = "
          f"{headline['ack_to_bare']:.2f}x bare insert {headline['bare_insert_per_s']:.0f}/s (target >= 0.6, p99 < 100; "
          f"{scaling}); applied {applied['per_second']:.0f}/s = {applied_ratio:.2f}x stock dj-stripe {stock.rate:.0f}/s "
          f"p99 {stock.pct(99) * 1000:.0f} ms (target >= 3x); 1 cluster {one:.0f}/s, 2 clusters {two:.0f}/s"
          + (f"; {args.inbox_rows:,} rows in the inbox {full:.0f}/s = {ratio(full, one):.2f}x (target >= 0.9)" if full else "")
          + (f"; RSS after {args.rss_events:,} events: gunicorn {rss['rss_mib_end']['gunicorn']} MiB, "
             f"qcluster {rss['rss_mib_end']['qcluster']} MiB" if rss else "")
          + (f"; dj-stripe mirror lag p50 {lag['p50']:.1f} s, p95 {lag['p95']:.1f} s, max {lag['max']:.1f} s "
             f"({lag['count']:,} mirrored)" if (lag := applied["mirror_lag_s"]).get("count") else "; nothing mirrored")
          + f"; load {os.getloadavg()[0]:.1f}" + (f"; NOT ACKNOWLEDGED: {refused}" if refused else ""))
    if refused:  # a delivery the console refused is a broken run, not a slow one
        sys.exit(1)


if __name__ == "__main__":
    main()
