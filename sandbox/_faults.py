"""Injectable failures shared by the HTTP stand-ins: a latency for every call and a queue of
"the next N calls fail like this" entries, optionally limited to one scope (an account, an instance)."""
from __future__ import annotations

import threading
from dataclasses import dataclass

DROP = "drop"  # close the connection without an answer (with `delay`, a timeout as the client sees it)


@dataclass
class Fault:
    status: int | str  # an HTTP status, or DROP
    remaining: int = 1
    scope: str | None = None  # None: any call
    retry_after: int | None = None  # seconds, sent as Retry-After on 429/503
    delay: float = 0.0  # seconds to wait before answering (or dropping)

    def as_dict(self) -> dict:
        return {"status": self.status, "remaining": self.remaining, "scope": self.scope,
                "retry_after": self.retry_after, "delay": self.delay}


class Faults:
    def __init__(self):
        self._lock = threading.Lock()
        self.latency = 0.0
        self._queue: list[Fault] = []

    def add(self, status: int | str, *, count: int = 1, scope: str | None = None,
            retry_after: int | None = None, delay: float = 0.0) -> Fault:
        if status != DROP and not (isinstance(status, int) and 400 <= status <= 599):
            raise ValueError(f"fault status must be an HTTP error status or {DROP!r}, not {status!r}")
        if count < 1:
            raise ValueError("fault count must be at least 1")
        fault = Fault(status, count, scope, retry_after, float(delay))
        with self._lock:
            self._queue.append(fault)
        return fault

    def take(self, scopes: set[str | None]) -> Fault | None:
        """Consume one use of the first queued fault that applies to a call touching `scopes`."""
        with self._lock:
            for fault in self._queue:
                if fault.scope is None or fault.scope in scopes:
                    fault.remaining -= 1
                    if fault.remaining == 0:
                        self._queue.remove(fault)
                    return fault
        return None

    def pending(self) -> list[dict]:
        with self._lock:
            return [f.as_dict() for f in self._queue]

    def clear(self) -> None:
        with self._lock:
            self._queue.clear()
            self.latency = 0.0

    def apply_json(self, data: dict, scope_key: str) -> None:
        """The body of `POST /_sandbox/faults`: {"latency": s}, {"clear": true} and/or
        {"status": 429 | "drop", "count": n, <scope_key>: id, "retry_after": s, "delay": s}."""
        if not isinstance(data, dict):
            raise ValueError("expected a JSON object")
        if data.get("clear"):
            self.clear()
        if "latency" in data:
            latency = float(data["latency"])
            if latency < 0:
                raise ValueError("latency must be >= 0")
            self.latency = latency
        if "status" in data:
            status = data["status"]
            if isinstance(status, str) and status.isdigit():
                status = int(status)
            self.add(status, count=int(data.get("count", 1)), scope=data.get(scope_key),
                     retry_after=data.get("retry_after"), delay=float(data.get("delay", 0)))
