"""Licence status under load: GET /api/license/status (device token) against a bare Django JSON view.

Runs the console under gunicorn (gthread, 2 workers x 4 threads) on PostgreSQL, with the rate
limiter on (limits set out of reach) in the cache the settings choose (Redis with --cache redis,
the database cache with --cache database). 8 clients on keep-alive connections, each a different
device; the bare view and the licence call alternate for --rounds rounds and the medians are kept.

    .venv/bin/python bench/bench_license_status.py [--duration 10] [--clients 8] [--rounds 2] [--cache redis]

Prints one line and writes var/bench/license_status.json.
"""
import argparse
import base64
import json
import os
import signal
import socket
import statistics
import subprocess
import sys
import threading
import time
from pathlib import Path
from urllib.parse import urlparse

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from bench.harness import Connection, Request, free_port, wait_port  # noqa: E402


def signing_key() -> str:
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

    raw = Ed25519PrivateKey.generate().private_bytes(serialization.Encoding.Raw, serialization.PrivateFormat.Raw,
                                                     serialization.NoEncryption())
    return base64.b64encode(raw).decode()


def recreate_database(url: str) -> None:
    import psycopg

    parsed = urlparse(url)
    name = parsed.path.lstrip("/")
    admin = parsed._replace(path="/postgres").geturl()
    with psycopg.connect(admin, autocommit=True) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        conn.execute(f'CREATE DATABASE "{name}"')


def seed(clients: int) -> list[str]:
    """One customer, licence and key per client; returns the keys (the bench's own, thrown away)."""
    import django
    from django.core.management import call_command

    django.setup()
    call_command("migrate", run_syncdb=True, verbosity=0)
    call_command("createcachetable", verbosity=0)
    from datetime import timedelta

    from django.utils import timezone

    from billing_console.models import Customer
    from licensing.keys import key_generate, key_hash, key_normalize, key_prefix
    from licensing.models import License

    keys = []
    for n in range(clients):
        customer = Customer.objects.create(email=f"bench{n}@example.com", subscription_id=f"sub_bench{n}",
                                           subscription_status="active", plan="pro", price_id="price_bench",
                                           current_period_end=timezone.now() + timedelta(days=20))
        key = key_generate()
        License.objects.create(customer=customer, subscription_id=customer.subscription_id,
                               key_hash=key_hash(key_normalize(key)), key_prefix=key_prefix(key_normalize(key)),
                               plan="pro", max_devices=3, offline_grace_days=7)
        keys.append(key)
    return keys


def load(port: int, path: str, headers_per_client: list[dict], duration: float, warmup: float) -> dict:
    stop_at = time.perf_counter() + warmup + duration
    measure_from = time.perf_counter() + warmup
    latencies: list[list[float]] = [[] for _ in headers_per_client]
    errors = [0] * len(headers_per_client)

    def run(i: int) -> None:
        conn, raw = Connection(port), Request("GET", path, headers=headers_per_client[i]).encode()
        while True:
            start = time.perf_counter()
            if start >= stop_at:
                break
            try:
                status = conn.call(raw)
            except (OSError, ConnectionError):
                conn.close()
                status = 0
            end = time.perf_counter()
            if start >= measure_from:
                latencies[i].append(end - start)
                if status != 200:
                    errors[i] += 1

    threads = [threading.Thread(target=run, args=(i,)) for i in range(len(headers_per_client))]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    all_latencies = sorted(x for per in latencies for x in per)
    return {"requests": len(all_latencies), "errors": sum(errors), "rps": len(all_latencies) / duration,
            "p50_ms": 1000 * all_latencies[len(all_latencies) // 2],
            "p99_ms": 1000 * all_latencies[int(len(all_latencies) * 0.99)]}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--duration", type=float, default=10.0)
    parser.add_argument("--warmup", type=float, default=2.0)
    parser.add_argument("--clients", type=int, default=8)
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--cache", choices=["redis", "database"], default="redis")
    parser.add_argument("--redis-url", default="redis://127.0.0.1:6379/15")
    parser.add_argument("--database-url", default="postgres://postgres@127.0.0.1:5432/bc_bench_license")
    parser.add_argument("--out", default=str(ROOT / "var" / "bench" / "license_status.json"))
    args = parser.parse_args()

    env = {**os.environ, "DJANGO_SETTINGS_MODULE": "bench.license_settings", "DATABASE_URL": args.database_url,
           "LICENSE_SIGNING_KEY": signing_key(), "LICENSE_RATE_LIMIT_PER_KEY": "1000000000",
           "LICENSE_RATE_LIMIT_PER_ADDRESS": "1000000000", "DEBUG": "false", "LOG_LEVEL": "WARNING",
           "REDIS_URL": args.redis_url if args.cache == "redis" else "", "DJANGO_ENV": "development"}
    os.environ.update(env)
    recreate_database(args.database_url)
    keys = seed(args.clients)

    port = free_port()
    gunicorn = [str(Path(sys.executable).parent / "gunicorn"), "billing_console.wsgi", "-k", "gthread", "-w", "2",
                "--threads", "4", "-b", f"127.0.0.1:{port}", "--log-level", "warning", "--keep-alive", "30"]
    server = subprocess.Popen(gunicorn, cwd=ROOT, env=env, start_new_session=True)
    try:
        wait_port(port, server)
        tokens = []
        for n, key in enumerate(keys):  # the real activation call gives each client its device token
            sock = socket.create_connection(("127.0.0.1", port))
            body = json.dumps({"key": key, "device_id": f"bench-device-{n}", "name": "bench"}).encode()
            sock.sendall(b"POST /api/license/activate HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n"
                         b"Content-Type: application/json\r\nContent-Length: " + str(len(body)).encode() +
                         b"\r\n\r\n" + body)
            answer = b""
            while chunk := sock.recv(65536):
                answer += chunk
            sock.close()
            head, _, payload = answer.partition(b"\r\n\r\n")
            if not head.startswith(b"HTTP/1.1 201"):
                raise SystemExit(f"activation failed: {head.splitlines()[0].decode()} {payload[:200].decode()}")
            tokens.append(json.loads(payload)["deviceAccessToken"])

        bare_headers = [{} for _ in keys]
        status_headers = [{"Authorization": f"Bearer {t}"} for t in tokens]
        runs = {"bare": [], "status": []}
        for _ in range(args.rounds):
            runs["bare"].append(load(port, "/bench/bare", bare_headers, args.duration, args.warmup))
            runs["status"].append(load(port, "/api/license/status", status_headers, args.duration, args.warmup))
    finally:
        os.kill(server.pid, signal.SIGTERM)  # the gunicorn master stops its workers
        server.wait(timeout=30)

    def median(name, field):
        return statistics.median(r[field] for r in runs[name])

    result = {
        "benchmark": "license_status", "at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "server": "gunicorn gthread 2 workers x 4 threads", "database": "postgresql", "cache": args.cache,
        "clients": args.clients, "duration_s": args.duration, "rounds": args.rounds, "cpus": os.cpu_count(),
        "status_rps": round(median("status", "rps"), 1), "status_p99_ms": round(median("status", "p99_ms"), 2),
        "bare_rps": round(median("bare", "rps"), 1), "bare_p99_ms": round(median("bare", "p99_ms"), 2),
        "errors": sum(r["errors"] for rs in runs.values() for r in rs), "runs": runs,
    }
    result["ratio"] = round(result["status_rps"] / result["bare_rps"], 3)
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(result, indent=2) + "\n")
    print(f"license status: {result['status_rps']:.0f} req/s, p99 {result['status_p99_ms']:.1f} ms | "
          f"bare view: {result['bare_rps']:.0f} req/s, p99 {result['bare_p99_ms']:.1f} ms | "
          f"ratio {result['ratio']:.2f} (cache={args.cache}, {args.clients} clients, errors {result['errors']})")
    if result["errors"]:
        sys.exit(1)


if __name__ == "__main__":
    main()
