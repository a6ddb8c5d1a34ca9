"""A fake Evolution API (v2) for WhatsApp: send text, connection state, injectable failures.

Answers as Evolution v2 does:
  POST /message/sendText/<instance>  header `apikey`, JSON {"number": "5511999999999", "text": "..."}
      201 {"key": {"remoteJid", "fromMe", "id"}, "status": "PENDING", "message": {"conversation"}, ...}
  401 {"status": 401, "error": "Unauthorized", "response": {"message": "Unauthorized"}}      wrong apikey
  404 {"status": 404, "error": "Not Found", "response": {"message": ['The "x" instance does not exist']}}
  400 {"status": 400, "error": "Bad Request", "response": {"message": [...]}}  bad body; a number not on
      WhatsApp answers message [{"exists": false, "jid": ..., "number": ...}]; an injected 400 is a
      rejected message (policy/template)
  500 {"status": 500, "error": "Internal Server Error", "response": {"message": "Connection Closed"}}
      instance disconnected (what Evolution answers when the WhatsApp session is closed)
  429 per-instance rate limit (`set_rate_limit`), with Retry-After
  GET /instance/connectionState/<instance> -> {"instance": {"instanceName", "state": "open" | "close"}}
  GET /instance/connect/<instance>  the same when open; a QR code payload when closed
  GET /  the unauthenticated "Welcome to the Evolution API, it is working!" answer
"""
from __future__ import annotations

import re
import secrets
import time
import uuid
from collections import deque
from datetime import datetime, timezone

from ._faults import DROP, Faults
from ._http import Request, Response, StandIn

_SEND_TEXT = re.compile(r"^/message/sendText/(?P<instance>[^/]+)$")
_STATE = re.compile(r"^/instance/(?:connectionState|connect)/(?P<instance>[^/]+)$")
_NUMBER = re.compile(r"^\+?\d{8,15}$")
_REASONS = {400: "Bad Request", 401: "Unauthorized", 403: "Forbidden", 404: "Not Found",
            429: "Too Many Requests", 500: "Internal Server Error", 502: "Bad Gateway", 503: "Service Unavailable"}


def evolution_error(status: int, message, headers: dict | None = None) -> Response:
    body = {"status": status, "error": _REASONS.get(status, "Error"), "response": {"message": message}}
    return Response(status, body, headers=headers)


class FakeEvolution(StandIn):
    name = "fake-evolution"

    def __init__(self, api_key: str = "sandbox-evolution-key", instances=("billing",),
                 host: str = "127.0.0.1", port: int = 0):
        super().__init__(host, port)
        self.api_key = api_key
        self._initial_instances = tuple(instances)
        self.faults = Faults()
        self.reset()

    # -- control (Python) -------------------------------------------------------------------------
    def reset(self) -> None:
        with self.lock:
            self._instances: dict[str, dict] = {}
            self._messages: list[dict] = []
            self._limits: dict[str, tuple[int, float]] = {}
            self._sent_at: dict[str, deque] = {}
            self._not_on_whatsapp: set[str] = set()
        for name in self._initial_instances:
            self.add_instance(name)
        self.faults.clear()

    def add_instance(self, name: str, state: str = "open") -> None:
        with self.lock:
            self._instances[name] = {"id": str(uuid.uuid4()), "state": state}

    def disconnect(self, instance: str) -> None:
        with self.lock:
            self._instances[instance]["state"] = "close"

    def connect(self, instance: str) -> None:
        with self.lock:
            self._instances[instance]["state"] = "open"

    def set_rate_limit(self, instance: str, max_messages: int, per_seconds: float = 60.0) -> None:
        """At most `max_messages` accepted per `per_seconds` for the instance; more answer 429."""
        if int(max_messages) < 0 or float(per_seconds) <= 0:
            raise ValueError("max_messages must be >= 0 and per_seconds > 0")
        with self.lock:
            self._limits[instance] = (int(max_messages), float(per_seconds))
            self._sent_at[instance] = deque()

    def mark_not_on_whatsapp(self, number: str) -> None:
        """Sends to this number answer 400 with exists: false, as Evolution does for unknown numbers."""
        with self.lock:
            self._not_on_whatsapp.add(number.lstrip("+"))

    def fail_next(self, status: int | str, count: int = 1, instance: str | None = None,
                  retry_after: int | None = None, delay: float = 0.0) -> None:
        """The next `count` sends (to `instance` only, if given) answer `status`, or drop (DROP);
        a DROP with `delay` looks like a timeout to a client with a shorter timeout."""
        self.faults.add(status, count=count, scope=instance, retry_after=retry_after, delay=delay)

    @property
    def messages(self) -> list[dict]:
        with self.lock:
            return list(self._messages)

    # -- HTTP -------------------------------------------------------------------------------------
    def handle(self, request: Request) -> Response | None:
        if request.path.startswith("/_sandbox/"):
            return self._control(request)
        if self.faults.latency:
            time.sleep(self.faults.latency)
        if request.path == "/" and request.method == "GET":  # Evolution's unauthenticated liveness answer
            return Response(200, {"status": 200, "message": "Welcome to the Evolution API, it is working!",
                                  "version": "2.2.3-sandbox"})
        if not secrets.compare_digest((request.headers.get("apikey") or "").encode(), self.api_key.encode()):
            return evolution_error(401, "Unauthorized")
        send, state = _SEND_TEXT.match(request.path), _STATE.match(request.path)
        match = send or state
        if not match:
            return evolution_error(404, f"Cannot {request.method} {request.path}")
        instance = match["instance"]
        with self.lock:
            known = self._instances.get(instance)
        if known is None:
            return evolution_error(404, [f'The "{instance}" instance does not exist'])
        if state and request.method == "GET":
            if request.path.startswith("/instance/connect/") and known["state"] != "open":
                # A closed session needs its QR code scanned again; the stand-in reconnects via control only.
                return Response(200, {"pairingCode": None, "code": f"2@sandbox-{instance}", "count": 1,
                                      "base64": "data:image/png;base64,"})
            return Response(200, {"instance": {"instanceName": instance, "state": known["state"]}})
        if not (send and request.method == "POST"):
            return evolution_error(404, f"Cannot {request.method} {request.path}")

        fault = self.faults.take({instance})
        if fault:
            return self._fault_response(fault)
        return self._send_text(request, instance, known)

    def _send_text(self, request: Request, instance: str, known: dict) -> Response:
        try:
            body = request.json()
        except ValueError:
            return evolution_error(400, ["body is not valid JSON"])
        if not isinstance(body, dict):
            return evolution_error(400, ["body must be a JSON object"])
        missing = [f'instance requires property "{key}"' for key in ("number", "text")
                   if not isinstance(body.get(key), str) or not body[key]]
        if missing:
            return evolution_error(400, missing)
        number = body["number"].lstrip("+")
        jid = f"{number}@s.whatsapp.net"
        with self.lock:
            unknown = number in self._not_on_whatsapp
        if not _NUMBER.match(body["number"]) or unknown:
            return evolution_error(400, [{"exists": False, "jid": jid, "number": body["number"]}])
        if known["state"] != "open":
            return evolution_error(500, "Connection Closed")

        now = time.time()
        with self.lock:
            if instance in self._limits:
                limit, window = self._limits[instance]
                sent = self._sent_at[instance]
                while sent and sent[0] <= now - window:
                    sent.popleft()
                if len(sent) >= limit:
                    oldest = sent[0] if sent else now
                    retry_after = max(1, int(oldest + window - now + 0.999))
                    return evolution_error(429, "Rate limit exceeded", headers={"Retry-After": str(retry_after)})
                sent.append(now)
            message_id = "3EB0" + secrets.token_hex(8).upper()
            record = {"id": message_id, "instance": instance, "number": number, "text": body["text"],
                      "sent_at": datetime.fromtimestamp(now, timezone.utc).isoformat().replace("+00:00", "Z")}
            self._messages.append(record)
        return Response(201, {
            "key": {"remoteJid": jid, "fromMe": True, "id": message_id},
            "pushName": "", "status": "PENDING",
            "message": {"conversation": body["text"]},
            "contextInfo": None, "messageType": "conversation",
            "messageTimestamp": int(now), "instanceId": known["id"], "source": "unknown",
        })

    def _fault_response(self, fault) -> Response | None:
        if fault.delay:
            time.sleep(fault.delay)
        if fault.status == DROP:
            return None
        headers = {"Retry-After": str(fault.retry_after or 1)} if fault.status in (429, 503) else {}
        if fault.status == 400:
            return evolution_error(400, ["Message rejected: the text violates WhatsApp Business policy"])
        if fault.status == 500:
            return evolution_error(500, "Internal Server Error")
        return evolution_error(fault.status, _REASONS.get(fault.status, "Error"), headers=headers)

    # -- control (HTTP) ---------------------------------------------------------------------------
    def _control(self, request: Request) -> Response:
        """GET /_sandbox/messages[?instance=&number=]; GET|POST /_sandbox/faults (Faults.apply_json with
        "instance"); POST /_sandbox/instances {instance, state: open|close}; POST /_sandbox/rate_limit
        {instance, max_messages, per_seconds}; POST /_sandbox/reset."""
        path, method = request.path, request.method
        try:
            if path == "/_sandbox/messages" and method == "GET":
                messages = [m for m in self.messages if request.query.get("instance") in (None, m["instance"])
                            and request.query.get("number", "").lstrip("+") in ("", m["number"])]
                return Response(200, {"messages": messages})
            if path == "/_sandbox/faults" and method == "GET":
                return Response(200, {"latency": self.faults.latency, "faults": self.faults.pending()})
            if path == "/_sandbox/faults" and method == "POST":
                self.faults.apply_json(request.json(), scope_key="instance")
                return Response(200, {"latency": self.faults.latency, "faults": self.faults.pending()})
            if path == "/_sandbox/instances" and method == "POST":
                data = request.json()
                if data.get("state", "open") not in ("open", "close"):
                    raise ValueError("state must be open or close")
                with self.lock:
                    exists = data["instance"] in self._instances
                if not exists:
                    self.add_instance(data["instance"], data.get("state", "open"))
                else:
                    (self.connect if data.get("state", "open") == "open" else self.disconnect)(data["instance"])
                return Response(200, {"instance": data["instance"], "state": data.get("state", "open")})
            if path == "/_sandbox/rate_limit" and method == "POST":
                data = request.json()
                self.set_rate_limit(data["instance"], data["max_messages"], data.get("per_seconds", 60))
                return Response(200, {"instance": data["instance"]})
            if path == "/_sandbox/reset" and method == "POST":
                self.reset()
                return Response(200, {"reset": True})
        except (KeyError, TypeError, ValueError, AttributeError) as exc:
            return Response(400, {"error": f"bad control request: {exc!r}"})
        return Response(404, {"error": f"no control endpoint {method} {path}"})
