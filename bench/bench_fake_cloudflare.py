"""Capacity of the fake Cloudflare itself: N Worker uploads at a given concurrency and latency.

The push benchmark measures the console against this stand-in; this one shows the stand-in is not
the bottleneck. The server runs in its own process (as it does beside the console); the client is
plain http.client in threads, the cheapest client there is.

    .venv/bin/python bench/bench_fake_cloudflare.py [--calls 10000] [--concurrency 32] [--latency 0.05]
"""
import argparse
import http.client
import json
import multiprocessing
import resource
import sys
import threading
import time
import uuid
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # run as a script from anywhere


def serve(latency, ready, port_holder, done):
    from sandbox.cloudflare import FakeCloudflare

    cf = FakeCloudflare().start()
    cf.add_token("bench-token", "bench-account")
    cf.set_latency(latency)
    port_holder.value = cf.port
    ready.set()
    done.wait()
    port_holder.value = len(cf.uploads)
    cf.stop()


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--calls", type=int, default=10_000)
    parser.add_argument("--concurrency", type=int, default=32)
    parser.add_argument("--latency", type=float, default=0.05)
    parser.add_argument("--bundle-kb", type=int, default=50)
    args = parser.parse_args()

    ready, done, port = multiprocessing.Event(), multiprocessing.Event(), multiprocessing.Value("i", 0)
    server = multiprocessing.Process(target=serve, args=(args.latency, ready, port, done))
    server.start()
    ready.wait(10)

    boundary = uuid.uuid4().hex
    body = (f'--{boundary}\r\nContent-Disposition: form-data; name="metadata"\r\n'
            f'Content-Type: application/json\r\n\r\n{json.dumps({"main_module": "worker.mjs"})}\r\n'
            f'--{boundary}\r\nContent-Disposition: form-data; name="worker.mjs"; filename="worker.mjs"\r\n'
            f'Content-Type: application/javascript+module\r\n\r\n').encode()
    body += b"x" * (args.bundle_kb * 1024) + f"\r\n--{boundary}--\r\n".encode()
    headers = {"Authorization": "Bearer bench-token", "Content-Type": f"multipart/form-data; boundary={boundary}"}
    next_call, lock, failures = iter(range(args.calls)), threading.Lock(), []

    def worker():
        connection = http.client.HTTPConnection("127.0.0.1", port.value, timeout=30)
        while True:
            with lock:
                i = next(next_call, None)
            if i is None:
                return
            connection.request("PUT", f"/client/v4/accounts/bench-account/workers/scripts/w{i}", body, headers)
            response = connection.getresponse()
            response.read()
            if response.status != 200:
                failures.append(response.status)

    started = time.monotonic()
    threads = [threading.Thread(target=worker) for _ in range(args.concurrency)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    wall = time.monotonic() - started
    done.set()
    server.join(30)

    bound = args.calls * args.latency / args.concurrency
    result = {"calls": args.calls, "concurrency": args.concurrency, "latency_s": args.latency,
              "wall_s": round(wall, 2), "bound_s": round(bound, 2), "ratio": round(wall / bound, 2) if bound else None,
              "uploads_recorded": port.value, "failures": len(failures),
              "client_cpu_s": round(resource.getrusage(resource.RUSAGE_SELF).ru_utime, 2)}
    out = Path("var/bench")
    out.mkdir(parents=True, exist_ok=True)
    (out / "fake_cloudflare.json").write_text(json.dumps(result, indent=2))
    print(f"fake cloudflare: {args.calls} uploads in {wall:.2f}s, bound {bound:.2f}s "
          f"(x{result['ratio']}), {len(failures)} failures")


if __name__ == "__main__":
    main()
