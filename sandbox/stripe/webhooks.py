"""Signed webhook delivery, as Stripe does it, with injectable faults.

One background thread delivers events in the order they were emitted. A delivery that gets a
non-2xx answer or a connection error is retried with exponential backoff (bounded), without
holding back the events behind it, as Stripe does. Faults: duplicate, reorder, delay, hold.
"""
from __future__ import annotations

import hashlib
import heapq
import hmac
import json
import random
import threading
import time
import urllib.error
import urllib.request


def sign_payload(payload: bytes, secret: str, timestamp: int | None = None) -> str:
    """The `Stripe-Signature` header value Stripe sends for `payload` signed with `secret`."""
    if isinstance(payload, str):
        payload = payload.encode()
    timestamp = int(time.time()) if timestamp is None else int(timestamp)
    signed = f"{timestamp}.".encode() + payload
    digest = hmac.new(secret.encode(), signed, hashlib.sha256).hexdigest()
    return f"t={timestamp},v1={digest}"


class Faults:
    """Webhook faults. `duplicate` is a probability (True means every event)."""

    def __init__(self):
        self.duplicate = 0.0
        self.reorder = False
        self.delay_seconds = 0.0
        self.hold = False

    def as_dict(self) -> dict:
        return {"duplicate": self.duplicate, "reorder": self.reorder,
                "delay_seconds": self.delay_seconds, "hold": self.hold}


class WebhookDelivery:
    """Queue and deliver events to endpoints given per event as `(endpoint_id, url, secret)`.
    `on_result(event_id, endpoint_id, ok)` reports each delivery once it succeeded or gave up."""

    def __init__(self, *, max_attempts: int = 5, retry_base_seconds: float = 0.5, timeout_seconds: float = 10.0,
                 reorder_window_seconds: float = 0.1, seed: int | None = None, on_result=None):
        self.max_attempts = max_attempts
        self.retry_base_seconds = retry_base_seconds
        self.timeout_seconds = timeout_seconds
        self.reorder_window_seconds = reorder_window_seconds
        self.faults = Faults()
        self.random = random.Random(seed)
        self.on_result = on_result
        self.deliveries: list[dict] = []  # every attempt, for GET /_sandbox/events/delivered
        self._queue: list[tuple[float, int, dict]] = []  # (due, seq, job), a heap
        self._held: list[dict] = []
        self._seq = 0
        self._in_flight = 0
        self._cond = threading.Condition()
        self._stopping = False
        self._thread: threading.Thread | None = None

    # -- configuration ----------------------------------------------------------------------
    def set_faults(self, **changes):
        with self._cond:
            for key, value in changes.items():
                if key == "duplicate":
                    value = 1.0 if value is True else float(value or 0)
                    if not 0.0 <= value <= 1.0:
                        raise ValueError("duplicate must be a probability between 0 and 1, or true")
                elif key == "delay_seconds":
                    value = float(value or 0)
                    if value < 0:
                        raise ValueError("delay_seconds must not be negative")
                elif key in ("reorder", "hold"):
                    if not isinstance(value, bool):
                        raise ValueError(f"{key} must be true or false")
                else:
                    raise ValueError(f"unknown webhook fault: {key}")
                setattr(self.faults, key, value)
            self._cond.notify_all()

    # -- lifecycle --------------------------------------------------------------------------
    def start(self):
        if self._thread is None:
            self._stopping = False
            self._thread = threading.Thread(target=self._run, name="stripe-webhooks", daemon=True)
            self._thread.start()

    def stop(self):
        with self._cond:
            self._stopping = True
            self._cond.notify_all()
        if self._thread:
            self._thread.join(timeout=5)
            self._thread = None

    # -- queueing ---------------------------------------------------------------------------
    def enqueue(self, event_id: str, body: bytes, targets: list[tuple[str, str, str]]):
        """Queue one event's body for each `(endpoint_id, url, secret)`."""
        with self._cond:
            for endpoint_id, url, secret in targets:
                copies = 2 if self.faults.duplicate and self.random.random() < self.faults.duplicate else 1
                for copy in range(copies):
                    job = {"event_id": event_id, "body": body, "attempt": 0, "duplicate": copy > 0,
                           "seq": self._next_seq(), "endpoint": endpoint_id, "url": url, "secret": secret}
                    if self.faults.hold:
                        self._held.append(job)
                    else:
                        self._push(job, time.monotonic() + self.faults.delay_seconds)
            self._cond.notify_all()

    def flush(self) -> int:
        """Release held events now (reversed when the reorder fault is on)."""
        with self._cond:
            held, self._held = self._held, []
            if self.faults.reorder:
                held.reverse()
            now = time.monotonic()
            for job in held:
                job["seq"] = self._next_seq()
                self._push(job, now)
            self._cond.notify_all()
            return len(held)

    def wait_idle(self, timeout: float = 10.0) -> bool:
        """Wait until every queued (not held) delivery was attempted to its end."""
        deadline = time.monotonic() + timeout
        with self._cond:
            while self._queue or self._in_flight:
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    return False
                self._cond.wait(remaining)
            return True

    @property
    def held_count(self) -> int:
        with self._cond:
            return len(self._held)

    def _next_seq(self) -> int:
        self._seq += 1
        return self._seq

    def _push(self, job: dict, due: float):
        heapq.heappush(self._queue, (due, job["seq"], job))

    # -- the delivery thread ----------------------------------------------------------------
    def _run(self):
        while True:
            with self._cond:
                batch = self._take_due()
                if batch is None:
                    return
                self._in_flight += len(batch)
            for job in batch:
                try:
                    self._attempt(job)
                finally:
                    with self._cond:
                        self._in_flight -= 1
                        self._cond.notify_all()

    def _take_due(self):
        """Block until jobs are due; return them in delivery order (None when stopping)."""
        while not self._stopping:
            now = time.monotonic()
            if self._queue and self._queue[0][0] <= now:
                if self.faults.reorder and self.reorder_window_seconds:
                    # Let the rest of a burst arrive, so there is something to reorder.
                    deadline = now + self.reorder_window_seconds
                    while not self._stopping and time.monotonic() < deadline:
                        self._cond.wait(deadline - time.monotonic())
                    if self._stopping:
                        return None
                    now = time.monotonic()
                batch = []
                while self._queue and self._queue[0][0] <= now:
                    batch.append(heapq.heappop(self._queue)[2])
                if self.faults.reorder:
                    batch.reverse()
                return batch
            wait = self._queue[0][0] - now if self._queue else None
            self._cond.wait(wait)
        return None

    def _attempt(self, job: dict):
        url = job["url"]
        job["attempt"] += 1
        status, error = None, None
        request = urllib.request.Request(url, data=job["body"], method="POST", headers={
            "Content-Type": "application/json; charset=utf-8",
            "User-Agent": "Stripe/1.0 (+https://stripe.com/docs/webhooks)",
            "Stripe-Signature": sign_payload(job["body"], job["secret"]),
        })
        try:
            with urllib.request.urlopen(request, timeout=self.timeout_seconds) as response:
                status = response.status
                response.read()
        except urllib.error.HTTPError as exc:
            status = exc.code
        except (OSError, ValueError) as exc:  # refused, reset, timed out, bad URL
            error = f"{type(exc).__name__}: {exc}"
        ok = status is not None and 200 <= status < 300
        with self._cond:
            self.deliveries.append({
                "event_id": job["event_id"], "attempt": job["attempt"], "status": status,
                "error": error, "ok": ok, "duplicate": job["duplicate"], "at": time.time(),
                "endpoint": job["endpoint"], "url": url,
            })
            retry = not ok and job["attempt"] < self.max_attempts and not self._stopping
            if retry:
                backoff = self.retry_base_seconds * (2 ** (job["attempt"] - 1))
                self._push(job, time.monotonic() + backoff)
        if not retry and self.on_result:
            self.on_result(job["event_id"], job["endpoint"], ok)


def event_body(event: dict) -> bytes:
    return json.dumps(event, indent=2).encode()
