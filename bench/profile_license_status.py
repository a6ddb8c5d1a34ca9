"""Where a licence status call's time goes: cProfile over in-process calls of the WSGI application.

The same request as bench/bench_license_status.py (GET /api/license/status with a device token, the
rate limiter on Redis, PostgreSQL), called straight through Django's WSGI handler (no gunicorn, no
socket) so the profile holds only the console's own work; the bare JSON view is profiled beside it.
Prints the per-call time of each and the top functions by own time (tottime) for the status call.

    .venv/bin/python bench/profile_license_status.py [--calls 3000] [--top 25] [--answer-cache off]

`--answer-cache off` empties the per-process answer cache before every call (the cost of a miss:
reading, deciding and signing), to see what the cache saves.
"""
import argparse
import cProfile
import io
import json
import os
import pstats
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from bench.bench_license_status import recreate_database, seed, signing_key  # noqa: E402


def environ(path: str, headers: dict, method: str = "GET", body: bytes = b"") -> dict:
    env = {"REQUEST_METHOD": method, "PATH_INFO": path, "QUERY_STRING": "", "SERVER_NAME": "127.0.0.1",
           "SERVER_PORT": "80", "REMOTE_ADDR": "127.0.0.1", "HTTP_HOST": "127.0.0.1", "wsgi.url_scheme": "http",
           "wsgi.input": io.BytesIO(body), "wsgi.errors": sys.stderr, "SERVER_PROTOCOL": "HTTP/1.1",
           "CONTENT_LENGTH": str(len(body)), "CONTENT_TYPE": "application/json" if body else ""}
    env.update({"HTTP_" + k.upper().replace("-", "_"): v for k, v in headers.items()})
    return env


def call(app, path: str, headers: dict, method: str = "GET", body: bytes = b"") -> tuple[str, bytes]:
    status = []
    chunks = app(environ(path, headers, method, body), lambda s, h, exc=None: status.append(s))
    data = b"".join(chunks)
    getattr(chunks, "close", lambda: None)()
    return status[0], data


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--calls", type=int, default=3000)
    parser.add_argument("--top", type=int, default=25)
    parser.add_argument("--answer-cache", choices=["on", "off"], default="on")
    parser.add_argument("--redis-url", default="redis://127.0.0.1:6379/15")
    parser.add_argument("--database-url", default="postgres://postgres@127.0.0.1:5432/bc_bench_license_profile")
    args = parser.parse_args()
    os.environ.update({"DJANGO_SETTINGS_MODULE": "bench.license_settings", "DATABASE_URL": args.database_url,
                       "LICENSE_SIGNING_KEY": signing_key(), "LICENSE_RATE_LIMIT_PER_KEY": "1000000000",
                       "LICENSE_RATE_LIMIT_PER_ADDRESS": "1000000000", "DEBUG": "false", "LOG_LEVEL": "WARNING",
                       "REDIS_URL": args.redis_url, "DJANGO_ENV": "development"})
    recreate_database(args.database_url)
    [key] = seed(1)
    from django.core.wsgi import get_wsgi_application

    from licensing import status_cache

    app = get_wsgi_application()
    body = json.dumps({"key": key, "device_id": "profile-device", "name": "profile"}).encode()
    status, answer = call(app, "/api/license/activate", {}, "POST", body)
    assert status.startswith("201"), (status, answer[:200])
    headers = {"Authorization": f"Bearer {json.loads(answer)['deviceAccessToken']}"}
    miss = args.answer_cache == "off"

    def status_call():
        if miss:
            status_cache.clear()
        return call(app, "/api/license/status", headers)

    per_call = {}
    for name, fn in (("bare", lambda: call(app, "/bench/bare", {})), ("status", status_call)):
        for _ in range(200):  # warm: connections, compiled queries, caches
            assert fn()[0].startswith("200")
        started, cpu = time.perf_counter(), time.process_time()
        for _ in range(args.calls):
            fn()
        per_call[name] = ((time.perf_counter() - started) / args.calls * 1000,
                          (time.process_time() - cpu) / args.calls * 1000)
    profile = cProfile.Profile()
    profile.enable()
    for _ in range(args.calls):
        status_call()
    profile.disable()
    out = io.StringIO()
    pstats.Stats(profile, stream=out).sort_stats("tottime").print_stats(args.top)
    print("\n".join(line for line in out.getvalue().splitlines() if line.strip())[:20000])
    print(f"per call, in process (answer cache {args.answer_cache}): status {per_call['status'][0]:.3f} ms wall, "
          f"{per_call['status'][1]:.3f} ms CPU | bare view {per_call['bare'][0]:.3f} ms wall, "
          f"{per_call['bare'][1]:.3f} ms CPU (the CPU of PostgreSQL and Redis is not in these)")


if __name__ == "__main__":
    main()
