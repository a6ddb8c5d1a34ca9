"""A stateful Stripe API emulator: the subset that the console and dj-stripe 2.11 call.

The real `stripe` library talks to it through `stripe.api_base = emulator.url`. This module holds
the server: authentication, API faults, `Idempotency-Key`, the router, the clock, the control routes
(`/_sandbox/...`) and persistence. Each resource family lives in `resources/<family>.py` and
registers its routes; objects live in the shared `Store`; events are built in `eventlog.py`.
"""
from __future__ import annotations

import base64
import contextlib
import copy
import hashlib
import json
import os
import re
import tempfile
import time
from pathlib import Path

from .._http import Request, Response, StandIn
from . import pages, shapes
from .cards import DECLINE_MESSAGES, NON_TEST_CARD, TEST_CARDS, card_digits, luhn_ok  # noqa: F401 (re-exported)
from .errors import StripeError, missing  # noqa: F401 (re-exported)
from .eventlog import SECRETS, EventLog
from .params import ParamError, as_list, decode_body, decode_query
from .resources import (FAMILIES, charges, checkout, payment_intents, payment_methods, products, setup_intents,
                        test_clocks)
from .router import Router
from .store import Store

API_VERSION = "2026-05-27.dahlia"  # the version dj-stripe 2.11 pins
DAY = 86400
STATE_VERSION = 1

SEED_PRICES = (
    {"id": "price_sandbox_pro", "product": "prod_sandbox_pro", "product_name": "Billing Console Pro",
     "unit_amount": 900, "currency": "usd", "interval": "month", "nickname": "Pro"},
    {"id": "price_sandbox_team", "product": "prod_sandbox_team", "product_name": "Billing Console Team",
     "unit_amount": 2900, "currency": "usd", "interval": "month", "nickname": "Team"},
)

SANDBOX_ENDPOINT = "we_sandbox"  # the endpoint set by the constructor, the CLI and /_sandbox/webhook
IDEMPOTENCY = "idempotency"  # store table: key -> [fingerprint, status, body]


def build_router() -> Router:
    api = Router()
    for family in FAMILIES:
        family.register(api)
    return api


class StripeEmulator(StandIn):
    name = "stripe-emulator"

    def __init__(self, port: int = 0, webhook_url: str | None = None, webhook_secret: str | None = None,
                 api_key_prefix: str = "sk_test_", *, host: str = "127.0.0.1", prices=SEED_PRICES,
                 account_id: str = "acct_sandbox", account_name: str = "Billing Console Sandbox",
                 account_email: str = "billing@example.com", api_version: str = API_VERSION,
                 retry_days=(3, 5, 7), retries_exhausted: str = "cancel", checkout_expires_seconds: int = DAY,
                 webhook_max_attempts: int = 5, webhook_retry_seconds: float = 0.5,
                 webhook_timeout_seconds: float = 10.0, public_url: str | None = None,
                 seed: int | None = None, state_path: str | os.PathLike | None = None, reset: bool = False):
        super().__init__(host=host, port=port)
        self.api_key_prefix = api_key_prefix
        self.api_version = api_version
        self.retry_days = tuple(retry_days)
        if retries_exhausted not in ("cancel", "unpaid", "past_due"):
            raise ValueError("retries_exhausted must be 'cancel', 'unpaid' or 'past_due'")
        # What a subscription becomes when every retry of a renewal failed (the account's setting).
        self.retries_exhausted = retries_exhausted
        self.checkout_expires_seconds = checkout_expires_seconds
        self.public_url = public_url
        self.router = build_router()
        self.store = Store(self.router.virtual_fields)
        self.eventlog = EventLog(self.store, api_version=api_version, max_attempts=webhook_max_attempts,
                                 retry_seconds=webhook_retry_seconds, timeout_seconds=webhook_timeout_seconds,
                                 seed=seed, on_result=self._on_delivery_result)
        self._webhooks = self.eventlog.webhooks
        self._offset = 0
        self._frozen: int | None = None
        self.api_faults = {"api_500": 0, "api_timeout": 0, "timeout_seconds": 5.0}
        self.requests: list[dict] = []  # every API call: method, path, status
        self.state_path = Path(state_path) if state_path else None
        self.restored = False  # True when the state came from `state_path`
        if self.state_path and not reset and self.state_path.exists():
            self._load_state()
            self.restored = True
            self.account = self.store.objects[account_id]
        else:
            self.account = self.store.put(shapes.account(account_id=account_id, name=account_name,
                                                         email=account_email, created=self.now()))
            for spec in prices:
                self.seed_price(**spec)
        if webhook_url:
            self.configure_webhook(webhook_url, webhook_secret)
        self._save()

    # -- lifecycle and clock -----------------------------------------------------------------
    def start(self):
        super().start()
        self._webhooks.start()
        return self

    def stop(self):
        self._webhooks.stop()
        super().stop()
        with self.lock:
            self._save()

    @property
    def base_url(self) -> str:
        """Where browsers reach hosted pages (checkout, portal, invoices)."""
        return (self.public_url or self.url).rstrip("/")

    def now(self) -> int:
        if self._frozen is not None:
            return self._frozen
        return int(time.time()) + self._offset

    def advance(self, *, days: float = 0, hours: float = 0, seconds: float = 0) -> int:
        """Move the clock forward, running renewals, retries and expiries in time order."""
        delta = int(days * DAY + hours * 3600 + seconds)
        if delta < 0:
            raise ValueError("the clock only moves forward")
        with self.lock:
            target = self.now() + delta
            self._run_due(target)
            self._offset = target - int(time.time())
            self._save()
            return target

    def emit(self, event_type: str, obj: dict, previous_attributes=None) -> dict:
        """Emit the event Stripe emits for this change (a snapshot of `obj`), to every matching endpoint."""
        return self.eventlog.emit(event_type, obj, self.now(), previous_attributes)

    # -- helpers for tests and scripts -------------------------------------------------------
    @property
    def objects(self) -> dict[str, dict]:
        return self.store.objects

    @property
    def events(self) -> list[dict]:
        with self.lock:
            return copy.deepcopy(self.eventlog.events)

    def get(self, object_id: str) -> dict:
        with self.lock:
            return copy.deepcopy(self.store.objects[object_id])

    def list_objects(self, object_type: str) -> list[dict]:
        with self.lock:
            return copy.deepcopy(self.store.all(object_type))

    def configure_webhook(self, url: str | None = None, secret: str | None = None) -> dict | None:
        """Point the sandbox's own endpoint (`we_sandbox`, all events) at `url`, signed with `secret`
        (generated when not given; read it back with `webhook_secret`). `url=""` removes it."""
        with self.lock:
            secrets = self.store.table(SECRETS)
            endpoint = self.store.objects.get(SANDBOX_ENDPOINT)
            if url == "":
                self.store.remove(SANDBOX_ENDPOINT)
                secrets.pop(SANDBOX_ENDPOINT, None)
                self._save()
                return None
            if endpoint is None:
                if not url:
                    raise ValueError("give the webhook url")
                endpoint = self.store.put(shapes.webhook_endpoint(
                    endpoint_id=SANDBOX_ENDPOINT, url=url, enabled_events=["*"], created=self.now(),
                    api_version=self.api_version, description="Stripe sandbox endpoint"))
            elif url:
                endpoint["url"] = url
            if secret or SANDBOX_ENDPOINT not in secrets:
                secrets[SANDBOX_ENDPOINT] = secret or shapes.new_id("whsec_", 32)
            self._save()
            return copy.deepcopy(endpoint)

    @property
    def webhook_secret(self) -> str | None:
        with self.lock:
            return self.store.table(SECRETS).get(SANDBOX_ENDPOINT)

    def set_faults(self, **faults):
        """Webhook faults (duplicate, reorder, delay_seconds, hold) and API faults
        (api_500, api_timeout, timeout_seconds); `reset=True` clears them all first."""
        with self.lock:
            if faults.pop("reset", False):
                self.api_faults.update(api_500=0, api_timeout=0, timeout_seconds=5.0)
                self._webhooks.set_faults(duplicate=0, reorder=False, delay_seconds=0, hold=False)
            api = {k: faults.pop(k) for k in list(faults) if k in self.api_faults}
            for key, value in api.items():
                number = float(value) if key == "timeout_seconds" else int(value)
                if number < 0:
                    raise ValueError(f"{key} must not be negative")
                self.api_faults[key] = number
            self._webhooks.set_faults(**faults)

    def faults(self) -> dict:
        with self.lock:
            return {**self._webhooks.faults.as_dict(), **self.api_faults}

    def flush_webhooks(self) -> int:
        return self._webhooks.flush()

    def wait_idle(self, timeout: float = 10.0) -> bool:
        return self._webhooks.wait_idle(timeout)

    @property
    def deliveries(self) -> list[dict]:
        with self._webhooks._cond:
            return [dict(d) for d in self._webhooks.deliveries]

    def seed_price(self, **spec) -> dict:
        with self.lock:
            return copy.deepcopy(products.seed_price(self, **spec))

    def set_card(self, customer_id: str, outcome: str | None = None, card: str | None = None) -> dict:
        """Make the customer's future charges succeed or decline (`outcome`), or give the
        customer a new default card (`card`, a test card number: 4000 0000 0000 0341 declines)."""
        with self.lock:
            customer = self.store.get("customer", customer_id)
            if outcome not in (None, "succeed", "decline"):
                raise ValueError("outcome must be 'succeed' or 'decline'")
            overrides = self.store.table(payment_methods.CHARGES_SUCCEED)
            if card:
                number = card_digits(card)
                if number not in TEST_CARDS:
                    raise ValueError("card must be one of the sandbox test cards")
                pm = payment_methods.attach_card(self, customer, number, email=customer["email"],
                                                 name=customer["name"])
                payment_methods.set_default_payment_method(self, customer, pm["id"])
                overrides.pop(customer_id, None)
            if outcome:
                overrides[customer_id] = outcome == "succeed"
            self._save()
            return {"customer": customer_id, "charges_succeed": payment_methods.charge_ok(self, customer, None)[0]}

    def pay_checkout(self, session_id: str, card: str = "4242424242424242", email: str | None = None,
                     name: str | None = None, phone: str | None = None, promotion_code: str | None = None) -> dict:
        """Pay an open session the way the hosted page does. Returns `{"ok": True, "redirect": url}`
        or `{"ok": False, "error": message}` (the session stays open)."""
        with self.lock:
            self._run_due(self.now())
            self.eventlog.request_context = (None, None)
            result = checkout.pay_checkout(self, session_id, card, email, name, phone=phone,
                                           promotion_code=promotion_code)
            self._save()
            return result

    def authenticate(self, intent_id: str, outcome: str = "complete") -> dict:
        """Play the customer's part in 3D Secure for a PaymentIntent or SetupIntent in `requires_action`:
        `outcome` "complete" (the payment or setup goes on) or "fail"."""
        with self.lock:
            self.eventlog.request_context = (None, None)
            family = setup_intents if intent_id.startswith("seti_") else payment_intents
            result = family.authenticate(self, intent_id, outcome)
            self._save()
            return copy.deepcopy(result)

    def open_dispute(self, charge_id: str, reason: str = "fraudulent") -> dict:
        """Open a dispute on a succeeded charge, as a cardholder's bank would."""
        with self.lock:
            self.eventlog.request_context = (None, None)
            result = charges.open_dispute(self, self.store.get("charge", charge_id), reason)
            self._save()
            return copy.deepcopy(result)

    def _on_delivery_result(self, event_id: str, endpoint_id: str, ok: bool):
        with self.lock:
            self.eventlog.delivered(event_id, endpoint_id, ok)

    # -- persistence -------------------------------------------------------------------------
    def _save(self):
        """Write the whole state to `state_path` atomically (temp file, fsync, rename). Lock held."""
        if self.state_path is None:
            return
        state = {"version": STATE_VERSION, "saved_at": int(time.time()), "clock_offset": self._offset,
                 "store": self.store.state(), "eventlog": self.eventlog.state()}
        data = json.dumps(state, separators=(",", ":")).encode()
        self.state_path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=self.state_path.name + ".", suffix=".tmp", dir=self.state_path.parent)
        try:
            with os.fdopen(fd, "wb") as fh:
                fh.write(data)
                fh.flush()
                os.fsync(fh.fileno())
            os.replace(tmp, self.state_path)
        except BaseException:
            Path(tmp).unlink(missing_ok=True)
            raise
        dir_fd = os.open(self.state_path.parent, os.O_RDONLY)
        try:
            os.fsync(dir_fd)
        finally:
            os.close(dir_fd)

    def _load_state(self):
        state = json.loads(self.state_path.read_text())
        if state.get("version") != STATE_VERSION:
            raise ValueError(f"{self.state_path} has state version {state.get('version')}, expected "
                             f"{STATE_VERSION}: start with --reset")
        self._offset = state["clock_offset"]
        self.store.load(state["store"])
        self.eventlog.load(state["eventlog"])

    # -- the scheduler behind the clock ------------------------------------------------------
    @contextlib.contextmanager
    def at(self, moment: int):
        """Read `moment` as the time inside the block (a test clock's frozen time). Lock held."""
        saved = self._frozen
        self._frozen = moment
        try:
            yield
        finally:
            self._frozen = saved

    def run_due(self, until: int, clock: str | None = None):
        """Run everything due up to `until` on `clock` (None: objects on no test clock), earliest
        first, each at its own moment. Lock held."""
        saved, floor = self._frozen, 0
        try:
            while True:
                due = [c for finder in self.router.clock_hooks for c in finder(self, until)
                       if test_clocks.clock_of(self, c[2]) == clock]
                if not due:
                    return
                moment, _, object_id, action = min(due, key=lambda c: c[:3])
                floor = self._frozen = max(moment, floor)
                self.eventlog.request_context = (None, None)
                action(self, object_id)
        finally:
            self._frozen = saved

    def _run_due(self, until: int):
        self.run_due(until)

    # -- HTTP entry point --------------------------------------------------------------------
    def handle(self, request: Request) -> Response:
        path = request.path
        if path.startswith("/v1/") or path == "/v1":
            return self._api(request)
        if path.startswith("/_sandbox/") or path == "/_sandbox":
            return self._control(request)
        with self.lock:
            self._run_due(self.now())
            response = pages.route(self, request)
            if request.method == "POST":
                self._save()
            return response

    # -- the API -----------------------------------------------------------------------------
    def _api(self, request: Request) -> Response:
        request_id = shapes.new_id("req_", 14)
        headers = {"Request-Id": request_id,
                   "Stripe-Version": request.headers.get("Stripe-Version") or self.api_version}
        with self.lock:
            stall = None
            if self.api_faults["api_timeout"] > 0:
                self.api_faults["api_timeout"] -= 1
                stall = self.api_faults["timeout_seconds"]
            elif self.api_faults["api_500"] > 0:
                self.api_faults["api_500"] -= 1
                self.requests.append({"method": request.method, "path": request.path, "status": 500})
                return Response(500, {"error": {"type": "api_error", "message": (
                    "An unknown error occurred on Stripe's end (injected by the sandbox).")}}, headers)
        if stall is not None:
            time.sleep(stall)
            with self.lock:
                self.requests.append({"method": request.method, "path": request.path, "status": None})
            return None  # drop the connection without an answer

        with self.lock:
            status, body, replayed = self._api_locked(request, request_id)
            self.requests.append({"method": request.method, "path": request.path, "status": status})
            if request.method != "GET" and not replayed:
                self._save()
        if replayed:
            headers["Idempotent-Replayed"] = "true"
        return Response(status, body, headers, content_type="application/json")

    def _api_locked(self, request: Request, request_id: str):
        try:
            self._authenticate(request)
        except StripeError as exc:
            return exc.status, json.dumps(exc.body, indent=2).encode(), False
        key = request.headers.get("Idempotency-Key") if request.method == "POST" else None
        fingerprint = None
        saved = self.store.table(IDEMPOTENCY)
        if key:
            fingerprint = hashlib.sha256(f"{request.method} {request.path}\n".encode() + request.body).hexdigest()
            cached = saved.get(key)
            if cached:
                if cached[0] != fingerprint:
                    return 400, json.dumps({"error": {"type": "idempotency_error", "message": (
                        "Keys for idempotent requests can only be used with the same parameters they "
                        f"were first used with. Try using a key other than '{key}' if you meant to "
                        "execute a different request.")}}, indent=2).encode(), False
                return cached[1], cached[2].encode(), True
        try:
            self._run_due(self.now())
            self.eventlog.request_context = (request_id, key)
            status, body = 200, self._route(request)
        except ParamError as exc:
            status, body = 400, StripeError(400, str(exc), param=exc.param).body
        except StripeError as exc:
            status, body = exc.status, exc.body
        finally:
            self.eventlog.request_context = (None, None)
        encoded = json.dumps(body, indent=2)
        if key and (status < 300 or status == 402):  # Stripe saves results once execution began
            saved[key] = [fingerprint, status, encoded]
        return status, encoded.encode(), False

    def _authenticate(self, request: Request):
        header = request.headers.get("Authorization") or ""
        scheme, _, credential = header.partition(" ")
        if scheme.lower() == "basic":
            try:
                credential = base64.b64decode(credential).decode().split(":", 1)[0]
            except ValueError:
                credential = ""
        elif scheme.lower() != "bearer":
            credential = ""
        credential = credential.strip()
        if not credential:
            raise StripeError(401, (
                "You did not provide an API key. You need to provide your API key in the Authorization "
                "header, using Bearer auth (e.g. 'Authorization: Bearer YOUR_SECRET_KEY'). See "
                "https://stripe.com/docs/api#authentication for details, or we can help at "
                "https://support.stripe.com/."))
        if not credential.startswith(self.api_key_prefix) or len(credential) <= len(self.api_key_prefix):
            # Like Stripe, show only the ends of a wrong key.
            shown = (credential[:8] + "*" * (len(credential) - 12) + credential[-4:]
                     if len(credential) > 12 else "****")
            raise StripeError(401, f"Invalid API Key provided: {shown}")

    def _route(self, request: Request):
        params = decode_query(request.query)
        if request.method == "POST":
            params.update(decode_body(request.body))
        handler, path_params = self.router.match(request.method, request.path)
        expand = [e for e in as_list(params.pop("expand", None)) if isinstance(e, str)]
        with self._clock_of_request(path_params, params):
            return self.store.expand(self, handler(self, params, **path_params), expand)

    def _clock_of_request(self, path_params: dict, params: dict):
        """A call on an object (or for a customer) that lives on a test clock runs at the clock's time."""
        target = path_params.get("id")
        if not isinstance(target, str) or target not in self.store.objects:
            target = params.get("customer") if isinstance(params.get("customer"), str) else None
        clock_id = test_clocks.clock_of(self, target) if target else None
        clock = self.store.objects.get(clock_id) if clock_id else None
        if clock is None or self.store.objects.get(target, {}).get("object") == "test_helpers.test_clock":
            return contextlib.nullcontext()
        return self.at(clock["frozen_time"])

    # -- the control API (/_sandbox/...) -----------------------------------------------------
    def _control(self, request: Request) -> Response:
        try:
            payload = request.json() if request.body else {}
            if payload is not None and not isinstance(payload, dict):
                raise ValueError("send a JSON object")
            response = self._control_route(request, payload or {})
        except (ValueError, TypeError) as exc:
            return Response(400, {"error": {"type": "invalid_request_error", "message": str(exc)}})
        except StripeError as exc:
            return Response(exc.status, exc.body)
        return response

    def _control_route(self, request: Request, payload: dict) -> Response:
        method, path = request.method, request.path.rstrip("/")
        if path == "/_sandbox/clock" and method == "GET":
            with self.lock:
                return Response(200, self.clock_state())
        if path == "/_sandbox/clock/advance" and method == "POST":
            unknown = set(payload) - {"days", "hours", "seconds"}
            if unknown or not payload:
                raise ValueError("send {\"days\": N}, {\"hours\": N} or {\"seconds\": N}")
            with self.lock:
                before = len(self.eventlog.events)
                self.advance(**{k: float(v) for k, v in payload.items()})
                emitted = [e["type"] for e in self.eventlog.events[before:]]
                return Response(200, {**self.clock_state(), "events": emitted})
        if path == "/_sandbox/webhook" and method == "POST":
            unknown = set(payload) - {"url", "secret"}
            if unknown:
                raise ValueError(f"unknown fields: {sorted(unknown)}")
            self.configure_webhook(url=payload.get("url"), secret=payload.get("secret"))
            return Response(200, self.webhook_state())
        if path == "/_sandbox/webhook" and method == "GET":
            return Response(200, self.webhook_state())
        if path == "/_sandbox/webhook/flush" and method == "POST":
            return Response(200, {"flushed": self.flush_webhooks()})
        if path == "/_sandbox/faults" and method == "POST":
            self.set_faults(**payload)
            return Response(200, self.faults())
        if path == "/_sandbox/faults" and method == "GET":
            return Response(200, self.faults())
        if path == "/_sandbox/faults" and method == "DELETE":
            self.set_faults(reset=True)
            return Response(200, self.faults())
        if path == "/_sandbox/events/delivered" and method == "GET":
            return Response(200, {"object": "list", "data": self.deliveries})
        if path == "/_sandbox/requests" and method == "GET":
            with self.lock:
                return Response(200, {"object": "list", "data": list(self.requests)})
        if path == "/_sandbox/state" and method == "GET":
            with self.lock:
                return Response(200, {"state_path": str(self.state_path) if self.state_path else None,
                                      "restored": self.restored,
                                      "objects": {k: len(v) for k, v in self.store.ids.items() if v},
                                      "events": len(self.eventlog.events)})
        match = re.fullmatch(r"/_sandbox/customers/([^/]+)/card", path)
        if match and method == "POST":
            result = self.set_card(match.group(1), outcome=payload.get("outcome"), card=payload.get("card"))
            return Response(200, result)
        match = re.fullmatch(r"/_sandbox/checkout/([^/]+)/pay", path)
        if match and method == "POST":
            result = self.pay_checkout(match.group(1), card=payload.get("card", "4242424242424242"),
                                       email=payload.get("email"), name=payload.get("name"),
                                       phone=payload.get("phone"), promotion_code=payload.get("promotion_code"))
            return Response(200 if result["ok"] else 402, result)
        match = re.fullmatch(r"/_sandbox/(payment_intents|setup_intents)/([^/]+)/authenticate", path)
        if match and method == "POST":
            return Response(200, self.authenticate(match.group(2), payload.get("outcome", "complete")))
        match = re.fullmatch(r"/_sandbox/charges/([^/]+)/dispute", path)
        if match and method == "POST":
            return Response(200, self.open_dispute(match.group(1), payload.get("reason", "fraudulent")))
        return Response(404, {"error": {"type": "invalid_request_error",
                                        "message": f"Unrecognized sandbox URL ({method}: {request.path})"}})

    def clock_state(self) -> dict:
        now = self.now()
        return {"now": now, "iso": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(now)),
                "offset_seconds": self._offset}

    def webhook_state(self) -> dict:
        with self.lock:
            endpoint = self.store.objects.get(SANDBOX_ENDPOINT)
            return {"url": endpoint["url"] if endpoint else None,
                    "has_secret": SANDBOX_ENDPOINT in self.store.table(SECRETS), "held": self._webhooks.held_count}
