"""Shared pieces of the benchmarks: the bench database, gunicorn on loopback, a keep-alive load
generator, percentiles, and the JSON result file. Standard library (+ psycopg) only, so a bench
process stays light next to the server it measures.
"""
from __future__ import annotations

import json
import os
import platform
import signal
import socket
import subprocess
import sys
import threading
import time
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from urllib.parse import urlparse

ROOT = Path(__file__).resolve().parents[1]
PY = sys.executable
OUT = ROOT / "var" / "bench"
DEFAULT_DB = "postgres://postgres@127.0.0.1:5432/bc_bench"


def bench_database_url() -> str:
    return os.environ.get("BENCH_DATABASE_URL") or DEFAULT_DB


def ensure_database(url: str, *, migrate: bool = True) -> None:
    """Create the database if missing and apply migrations (a no-op once done; the first run takes
    a minute or two because of dj-stripe's migrations)."""
    import psycopg

    parsed = urlparse(url)
    name = parsed.path.lstrip("/")
    with psycopg.connect(parsed._replace(path="/postgres").geturl(), autocommit=True) as conn:
        if not conn.execute("SELECT 1 FROM pg_database WHERE datname = %s", [name]).fetchone():
            conn.execute(f'CREATE DATABASE "{name}"')
    if migrate:
        env = django_env(url)
        subprocess.run([PY, "manage.py", "migrate", "--noinput", "-v", "0", "--skip-checks"], cwd=ROOT, env=env, check=True)
        subprocess.run([PY, "manage.py", "createcachetable"], cwd=ROOT, env=env, check=True)


def django_env(database_url: str, **extra: str) -> dict[str, str]:
    """The environment of a console process under benchmark: PostgreSQL, no DEBUG, quiet logs."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("STRIPE_", "DJANGO_"))}
    env.update(DATABASE_URL=database_url, DEBUG="false", LOG_LEVEL="WARNING", PYTHONUNBUFFERED="1",
               DJANGO_SETTINGS_MODULE="billing_console.settings")
    env.update(extra)
    return env


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_port(port: int, proc: subprocess.Popen | None = None, seconds: float = 30) -> None:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if proc is not None and proc.poll() is not None:
            raise SystemExit(f"server exited with {proc.returncode}")
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.2).close()
            return
        except OSError:
            time.sleep(0.1)
    raise SystemExit(f"nothing answered on port {port}")


class Gunicorn:
    """gunicorn gthread (2 workers x 4 threads by default) on 127.0.0.1, stopped on exit."""

    def __init__(self, env: dict[str, str], *, workers: int = 2, threads: int = 4, log: Path | None = None):
        self.env, self.workers, self.threads = env, workers, threads
        self.port = free_port()
        self.log = log or OUT / "gunicorn.log"
        self.proc: subprocess.Popen | None = None

    def __enter__(self) -> "Gunicorn":
        self.log.parent.mkdir(parents=True, exist_ok=True)
        self.proc = subprocess.Popen(
            [PY, "-m", "gunicorn", "billing_console.wsgi:application", "--bind", f"127.0.0.1:{self.port}",
             "--worker-class", "gthread", "--workers", str(self.workers), "--threads", str(self.threads),
             "--backlog", "512", "--keep-alive", "30", "--log-level", "warning"],
            cwd=ROOT, env=self.env, stdout=self.log.open("ab"), stderr=subprocess.STDOUT)
        wait_port(self.port, self.proc)
        return self

    def __exit__(self, *exc) -> None:
        stop(self.proc)


def stop(proc: subprocess.Popen | None, timeout: float = 20) -> None:
    """TERM the main pid only (qcluster hangs if its whole process group gets it), then KILL."""
    if proc is None or proc.poll() is not None:
        return
    proc.send_signal(signal.SIGTERM)
    try:
        proc.wait(timeout)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait(5)


@dataclass
class Request:
    method: str
    path: str
    body: bytes = b""
    headers: dict = field(default_factory=dict)

    def encode(self) -> bytes:
        lines = [f"{self.method} {self.path} HTTP/1.1", "Host: 127.0.0.1", f"Content-Length: {len(self.body)}"]
        lines += [f"{k}: {v}" for k, v in self.headers.items()]
        return ("\r\n".join(lines) + "\r\n\r\n").encode() + self.body


class Connection:
    """One keep-alive HTTP/1.1 connection; pre-encoded requests; reads Content-Length bodies."""

    def __init__(self, port: int):
        self.port, self.sock, self.buffer = port, None, b""

    def call(self, raw: bytes) -> int:
        if self.sock is None:
            self.sock = socket.create_connection(("127.0.0.1", self.port), timeout=60)
            self.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            self.buffer = b""
        self.sock.sendall(raw)
        while b"\r\n\r\n" not in self.buffer:
            self._recv()
        head, _, rest = self.buffer.partition(b"\r\n\r\n")
        status, length, close = int(head[9:12]), 0, False
        for line in head.split(b"\r\n")[1:]:
            name, _, value = line.partition(b":")
            name = name.strip().lower()
            if name == b"content-length":
                length = int(value)
            elif name == b"connection" and value.strip().lower() == b"close":
                close = True
        while len(rest) < length:
            rest += self._chunk()
        self.buffer = rest[length:]
        if close:
            self.close()
        return status

    def close(self) -> None:
        if self.sock is not None:
            self.sock.close()
        self.sock = None

    def _chunk(self) -> bytes:
        chunk = self.sock.recv(65536)
        if not chunk:
            raise ConnectionError("connection closed by the server")
        return chunk

    def _recv(self) -> None:
        self.buffer += self._chunk()


@dataclass
class LoadResult:
    requests: int
    seconds: float
    latencies: list[float]
    statuses: dict[int, int]

    @property
    def rate(self) -> float:
        return self.requests / self.seconds if self.seconds else 0.0

    def pct(self, p: float) -> float:
        return percentile(self.latencies, p)

    def summary(self) -> dict:
        return {"requests": self.requests, "seconds": round(self.seconds, 3), "per_second": round(self.rate, 1),
                "p50_ms": round(self.pct(50) * 1000, 1), "p99_ms": round(self.pct(99) * 1000, 1),
                "statuses": {str(k): v for k, v in sorted(self.statuses.items())}}


def run_load(port: int, per_client: list[list[bytes]], *, repeat_for: float | None = None) -> LoadResult:
    """Each client sends its own list of pre-encoded requests on one connection. With `repeat_for`
    the lists are cycled for that many seconds; otherwise each list is sent once."""
    latencies: list[list[float]] = [[] for _ in per_client]
    statuses: list[dict[int, int]] = [{} for _ in per_client]
    start_gate = threading.Barrier(len(per_client) + 1)
    deadline = [0.0]

    def client(i: int) -> None:
        conn, lat, st = Connection(port), latencies[i], statuses[i]
        requests = per_client[i]
        start_gate.wait()
        n = 0
        while True:
            if repeat_for is None:
                if n >= len(requests):
                    break
            elif time.perf_counter() >= deadline[0]:
                break
            raw = requests[n % len(requests)]
            t0 = time.perf_counter()
            code = conn.call(raw)
            lat.append(time.perf_counter() - t0)
            st[code] = st.get(code, 0) + 1
            n += 1
        conn.close()

    threads = [threading.Thread(target=client, args=(i,), daemon=True) for i in range(len(per_client))]
    for t in threads:
        t.start()
    started = time.perf_counter()
    deadline[0] = started + (repeat_for or 0)
    start_gate.wait()
    for t in threads:
        t.join()
    seconds = time.perf_counter() - started
    merged: dict[int, int] = {}
    for st in statuses:
        for k, v in st.items():
            merged[k] = merged.get(k, 0) + v
    flat = [x for lat in latencies for x in lat]
    return LoadResult(len(flat), seconds, flat, merged)


def percentile(values: list[float], p: float) -> float:
    if not values:
        return 0.0
    ordered = sorted(values)
    k = min(len(ordered) - 1, max(0, round(p / 100 * len(ordered) + 0.5) - 1))
    return ordered[k]


def machine() -> dict:
    mem_kb = 0
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemTotal:"):
                mem_kb = int(line.split()[1])
    except OSError:
        pass
    return {"cpus": os.cpu_count(), "mem_gib": round(mem_kb / 1024 / 1024), "python": platform.python_version()}


def write_result(name: str, result: dict) -> Path:
    OUT.mkdir(parents=True, exist_ok=True)
    path = OUT / f"{name}.json"
    result = {"bench": name, "at": datetime.now(timezone.utc).isoformat(timespec="seconds"),
              "machine": machine(), **result}
    path.write_text(json.dumps(result, indent=2) + "\n")
    return path
