"""A stateful Stripe API emulator: the subset that the console and dj-stripe 2.11 call.

The real `stripe` library talks to it through `stripe.api_base = emulator.url`. Objects are
Stripe's own examples (fixtures3.json) filled from the emulator's state; events are snapshots of
the objects at emit time, delivered signed to one webhook endpoint. A clock that can be advanced
renews subscriptions, retries failed payments and expires checkout sessions.
"""
from __future__ import annotations

import base64
import copy
import hashlib
import json
import re
import time
from collections import defaultdict

from .._http import Request, Response, StandIn
from . import pages, shapes
from .params import ParamError, as_bool, as_int, as_list, decode_body, decode_query
from .webhooks import WebhookDelivery, event_body

API_VERSION = "2026-05-27.dahlia"  # the version dj-stripe 2.11 pins
DAY = 86400

SEED_PRICES = (
    {"id": "price_sandbox_pro", "product": "prod_sandbox_pro", "product_name": "Billing Console Pro",
     "unit_amount": 900, "currency": "usd", "interval": "month", "nickname": "Pro"},
    {"id": "price_sandbox_team", "product": "prod_sandbox_team", "product_name": "Billing Console Team",
     "unit_amount": 2900, "currency": "usd", "interval": "month", "nickname": "Team"},
)

# Stripe's test cards that the sandbox knows: number -> (charge succeeds?, decline code).
# 4000 0000 0000 0341 attaches to a customer but every charge on it fails.
TEST_CARDS = {
    "4242424242424242": (True, None),
    "5555555555554444": (True, None),
    "4000000000000341": (False, "generic_decline"),
    "4000000000000002": (False, "generic_decline"),
    "4000000000009995": (False, "insufficient_funds"),
}
DECLINE_MESSAGES = {
    "generic_decline": "Your card was declined.",
    "insufficient_funds": "Your card has insufficient funds.",
}
NON_TEST_CARD = ("Your card was declined. Your request was in test mode, but used a non test card. "
                 "For a list of valid test cards, visit: https://stripe.com/docs/testing.")

ID_PREFIXES = {"cus_": "customer", "sub_": "subscription", "in_": "invoice", "pm_": "payment_method",
               "price_": "price", "prod_": "product", "cs_": "checkout.session", "si_": "subscription_item",
               "bps_": "billing_portal.session", "evt_": "event", "acct_": "account", "we_": "webhook_endpoint"}


# How Stripe names each resource in "No such ..." errors.
ERROR_NAMES = {"payment_method": "PaymentMethod", "subscription_item": "subscription item",
               "webhook_endpoint": "webhook endpoint"}
SANDBOX_ENDPOINT = "we_sandbox"  # the endpoint set by the constructor, the CLI and /_sandbox/webhook


class StripeError(Exception):
    def __init__(self, status: int, message: str, *, type: str = "invalid_request_error", code=None,
                 param=None, decline_code=None, extra=None):
        super().__init__(message)
        self.status = status
        error = {"type": type, "message": message}
        if code:
            error["code"] = code
            error["doc_url"] = f"https://stripe.com/docs/error-codes/{code.replace('_', '-')}"
        if param:
            error["param"] = param
        if decline_code:
            error["decline_code"] = decline_code
        error.update(extra or {})
        self.body = {"error": error}


def missing(kind: str, object_id: str, param: str = "id") -> StripeError:
    return StripeError(404, f"No such {kind}: '{object_id}'", code="resource_missing", param=param)


def card_digits(card: str | None) -> str:
    return re.sub(r"[\s-]", "", card or "")


def luhn_ok(number: str) -> bool:
    if not number.isdigit() or not 12 <= len(number) <= 19:
        return False
    total = 0
    for i, digit in enumerate(int(d) for d in reversed(number)):
        if i % 2:
            digit = digit * 2 - 9 if digit > 4 else digit * 2
        total += digit
    return total % 10 == 0


class StripeEmulator(StandIn):
    name = "stripe-emulator"

    def __init__(self, port: int = 0, webhook_url: str | None = None, webhook_secret: str | None = None,
                 api_key_prefix: str = "sk_test_", *, host: str = "127.0.0.1", prices=SEED_PRICES,
                 account_id: str = "acct_sandbox", account_name: str = "Billing Console Sandbox",
                 account_email: str = "billing@example.com", api_version: str = API_VERSION,
                 retry_days=(3, 5, 7), checkout_expires_seconds: int = DAY,
                 webhook_max_attempts: int = 5, webhook_retry_seconds: float = 0.5,
                 webhook_timeout_seconds: float = 10.0, public_url: str | None = None,
                 seed: int | None = None):
        super().__init__(host=host, port=port)
        self.api_key_prefix = api_key_prefix
        self.api_version = api_version
        self.retry_days = tuple(retry_days)
        self.checkout_expires_seconds = checkout_expires_seconds
        self.public_url = public_url
        self.objects: dict[str, dict] = {}
        self._ids: dict[str, list[str]] = defaultdict(list)  # object type -> ids, oldest first
        self._events: list[dict] = []
        self._event_by_id: dict[str, dict] = {}
        self._delivery: dict[str, dict[str, bool | None]] = {}  # event -> endpoint -> delivered?
        self._endpoint_secrets: dict[str, str] = {}
        self._session_items: dict[str, list[dict]] = {}
        self._session_subscription_data: dict[str, dict] = {}
        self._card_numbers: dict[str, str] = {}  # payment method id -> card number
        self._card_override: dict[str, bool] = {}  # customer id -> charges succeed?
        self._cycles: dict[str, int] = {}  # subscription id -> billing periods started
        self._first_failure: dict[str, int] = {}  # invoice id -> time of the first failed attempt
        self._idempotency: dict[str, tuple[str, int, bytes]] = {}
        self._offset = 0
        self._frozen: int | None = None
        self._request_context: tuple[str | None, str | None] = (None, None)
        self.api_faults = {"api_500": 0, "api_timeout": 0, "timeout_seconds": 5.0}
        self.requests: list[dict] = []  # every API call: method, path, status
        self._webhooks = WebhookDelivery(max_attempts=webhook_max_attempts,
                                         retry_base_seconds=webhook_retry_seconds,
                                         timeout_seconds=webhook_timeout_seconds, seed=seed,
                                         on_result=self._on_delivery_result)
        self.account = shapes.account(account_id=account_id, name=account_name, email=account_email,
                                      created=self.now())
        self._store(self.account)
        for spec in prices:
            self.seed_price(**spec)
        if webhook_url:
            self.configure_webhook(webhook_url, webhook_secret)

    # -- lifecycle and clock -----------------------------------------------------------------
    def start(self):
        super().start()
        self._webhooks.start()
        return self

    def stop(self):
        self._webhooks.stop()
        super().stop()

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
            return target

    # -- helpers for tests and scripts -------------------------------------------------------
    @property
    def events(self) -> list[dict]:
        with self.lock:
            return copy.deepcopy(self._events)

    def get(self, object_id: str) -> dict:
        with self.lock:
            return copy.deepcopy(self.objects[object_id])

    def list_objects(self, object_type: str) -> list[dict]:
        with self.lock:
            return [copy.deepcopy(self.objects[i]) for i in self._ids[object_type]]

    def configure_webhook(self, url: str | None = None, secret: str | None = None) -> dict | None:
        """Point the sandbox's own endpoint (`we_sandbox`, all events) at `url`, signed with `secret`
        (generated when not given; read it back with `webhook_secret`). `url=""` removes it."""
        with self.lock:
            endpoint = self.objects.get(SANDBOX_ENDPOINT)
            if url == "":
                self.objects.pop(SANDBOX_ENDPOINT, None)
                self._endpoint_secrets.pop(SANDBOX_ENDPOINT, None)
                if SANDBOX_ENDPOINT in self._ids["webhook_endpoint"]:
                    self._ids["webhook_endpoint"].remove(SANDBOX_ENDPOINT)
                return None
            if endpoint is None:
                if not url:
                    raise ValueError("give the webhook url")
                endpoint = self._store(shapes.webhook_endpoint(
                    endpoint_id=SANDBOX_ENDPOINT, url=url, enabled_events=["*"], created=self.now(),
                    api_version=self.api_version, description="Stripe sandbox endpoint"))
            elif url:
                endpoint["url"] = url
            if secret or SANDBOX_ENDPOINT not in self._endpoint_secrets:
                self._endpoint_secrets[SANDBOX_ENDPOINT] = secret or shapes.new_id("whsec_", 32)
            return copy.deepcopy(endpoint)

    @property
    def webhook_secret(self) -> str | None:
        with self.lock:
            return self._endpoint_secrets.get(SANDBOX_ENDPOINT)

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

    def seed_price(self, *, id: str, product: str, product_name: str, unit_amount: int,
                   currency: str = "usd", interval: str | None = "month", interval_count: int = 1,
                   nickname=None, lookup_key=None, metadata=None) -> dict:
        with self.lock:
            if product not in self.objects:
                self._store(shapes.product(product_id=product, name=product_name, created=self.now()))
            price = shapes.price(price_id=id, product_id=product, unit_amount=unit_amount,
                                 currency=currency, created=self.now(), interval=interval,
                                 interval_count=interval_count, nickname=nickname,
                                 lookup_key=lookup_key, metadata=metadata)
            self._store(price)
            if self.objects[product]["default_price"] is None:
                self.objects[product]["default_price"] = id
            return copy.deepcopy(price)

    def set_card(self, customer_id: str, outcome: str | None = None, card: str | None = None) -> dict:
        """Make the customer's future charges succeed or decline (`outcome`), or give the
        customer a new default card (`card`, a test card number: 4000 0000 0000 0341 declines)."""
        with self.lock:
            customer = self._get("customer", customer_id)
            if outcome not in (None, "succeed", "decline"):
                raise ValueError("outcome must be 'succeed' or 'decline'")
            if card:
                number = card_digits(card)
                if number not in TEST_CARDS:
                    raise ValueError("card must be one of the sandbox test cards")
                pm = self._attach_card(customer, number, email=customer["email"], name=customer["name"])
                self._set_default_payment_method(customer, pm["id"])
                self._card_override.pop(customer_id, None)
            if outcome:
                self._card_override[customer_id] = outcome == "succeed"
            return {"customer": customer_id, "charges_succeed": self._charge_ok(customer, None)[0]}

    def pay_checkout(self, session_id: str, card: str = "4242424242424242", email: str | None = None,
                     name: str | None = None) -> dict:
        """Pay an open session the way the hosted page does. Returns `{"ok": True, "redirect": url}`
        or `{"ok": False, "error": message}` (the session stays open)."""
        with self.lock:
            self._run_due(self.now())
            self._request_context = (None, None)
            return self._pay_checkout(session_id, card, email, name)

    # -- storage ---------------------------------------------------------------------------
    def _store(self, obj: dict) -> dict:
        if obj["id"] not in self.objects:
            self._ids[obj["object"]].append(obj["id"])
        self.objects[obj["id"]] = obj
        return obj

    def _get(self, kind: str, object_id, param: str = "id") -> dict:
        obj = self.objects.get(object_id) if isinstance(object_id, str) else None
        if obj is None or obj.get("object") != kind or obj.get("deleted"):
            raise missing(ERROR_NAMES.get(kind, kind), str(object_id), param)
        return obj

    def _emit(self, event_type: str, obj: dict, previous_attributes=None) -> dict:
        request_id, idempotency_key = self._request_context
        event = shapes.event(event_id=shapes.new_id("evt_"), event_type=event_type,
                             obj=copy.deepcopy(obj), created=self.now(), api_version=self.api_version,
                             previous_attributes=previous_attributes, request_id=request_id,
                             idempotency_key=idempotency_key)
        targets = [(we["id"], we["url"], self._endpoint_secrets[we["id"]])
                   for we in (self.objects[i] for i in self._ids["webhook_endpoint"])
                   if we["status"] == "enabled" and ("*" in we["enabled_events"] or event_type in we["enabled_events"])]
        event["pending_webhooks"] = len(targets)
        self._events.append(event)
        self._event_by_id[event["id"]] = event
        if targets:
            self._delivery[event["id"]] = {endpoint_id: None for endpoint_id, _, _ in targets}
            self._webhooks.enqueue(event["id"], event_body(event), targets)
        return event

    def _on_delivery_result(self, event_id: str, endpoint_id: str, ok: bool):
        with self.lock:
            state = self._delivery.get(event_id)
            if state is None:
                return
            if state.get(endpoint_id) is not True:
                state[endpoint_id] = ok
            self._event_by_id[event_id]["pending_webhooks"] = sum(1 for v in state.values() if v is not True)

    # -- the scheduler behind the clock ------------------------------------------------------
    def _run_due(self, until: int):
        """Run everything due up to `until`, earliest first, each at its own moment."""
        try:
            while True:
                due = self._next_due(until)
                if due is None:
                    return
                moment, action, object_id = due
                self._frozen = max(moment, self._frozen or 0)
                self._request_context = (None, None)
                action(object_id)
        finally:
            self._frozen = None

    def _next_due(self, until: int):
        candidates = []
        for sid in self._ids["checkout.session"]:
            session = self.objects[sid]
            if session["status"] == "open" and session["expires_at"] <= until:
                candidates.append((session["expires_at"], 0, sid, self._expire_session))
        for iid in self._ids["invoice"]:
            invoice = self.objects[iid]
            attempt = invoice["next_payment_attempt"]
            if invoice["status"] == "open" and attempt and attempt <= until:
                candidates.append((attempt, 1, iid, self._retry_invoice))
        for sid in self._ids["subscription"]:
            sub = self.objects[sid]
            if sub["status"] in ("active", "past_due", "trialing"):
                if sub["cancel_at"] and sub["cancel_at"] < sub["current_period_end"] and sub["cancel_at"] <= until:
                    candidates.append((sub["cancel_at"], 2, sid, self._cancel_scheduled))
                elif sub["current_period_end"] <= until:
                    candidates.append((sub["current_period_end"], 2, sid, self._renew_subscription))
        if not candidates:
            return None
        moment, _, object_id, action = min(candidates, key=lambda c: c[:3])
        return moment, action, object_id

    # -- customers and cards ---------------------------------------------------------------
    def _create_customer(self, *, email=None, name=None, phone=None, description=None, metadata=None):
        customer = self._store(shapes.customer(customer_id=shapes.new_id("cus_", 14), created=self.now(),
                                               email=email, name=name, phone=phone,
                                               description=description, metadata=metadata))
        self._emit("customer.created", customer)
        return customer

    def _attach_card(self, customer: dict, number: str, *, email=None, name=None) -> dict:
        pm = shapes.payment_method(pm_id=shapes.new_id("pm_"), number=number, created=self.now(),
                                   customer_id=customer["id"], email=email, name=name)
        self._store(pm)
        self._card_numbers[pm["id"]] = number
        self._emit("payment_method.attached", pm)
        return pm

    def _set_default_payment_method(self, customer: dict, pm_id: str):
        previous = copy.deepcopy(customer["invoice_settings"])
        customer["invoice_settings"]["default_payment_method"] = pm_id
        self._emit("customer.updated", customer, {"invoice_settings": previous})
        for sid in self._ids["subscription"]:
            sub = self.objects[sid]
            if (sub["customer"] == customer["id"] and sub["status"] != "canceled"
                    and sub["default_payment_method"] != pm_id):
                old = sub["default_payment_method"]
                sub["default_payment_method"] = pm_id
                self._emit("customer.subscription.updated", sub, {"default_payment_method": old})

    def _charge_ok(self, customer: dict, pm_id: str | None) -> tuple[bool, str | None]:
        """(succeeds, decline code) for a charge on `pm_id` or the customer's default card."""
        override = self._card_override.get(customer["id"])
        if override is not None:
            return override, None if override else "generic_decline"
        pm_id = pm_id or customer["invoice_settings"]["default_payment_method"]
        number = self._card_numbers.get(pm_id)
        if number is None:
            return False, "no_payment_method"
        return TEST_CARDS.get(number, (False, "generic_decline"))

    # -- checkout --------------------------------------------------------------------------
    def _pay_checkout(self, session_id: str, card: str, email: str | None, name: str | None) -> dict:
        session = self._get("checkout.session", session_id)
        if session["status"] != "open":
            return {"ok": False, "error": "This Checkout Session is no longer active.", "status": session["status"]}
        customer = self.objects.get(session["customer"]) if session["customer"] else None
        email = (customer or {}).get("email") or (email or "").strip() or session["customer_email"]
        if not email or not re.fullmatch(r"[^@\s]+@[^@\s]+\.[^@\s]+", email):
            return {"ok": False, "error": "Your email address is invalid."}
        number = card_digits(card)
        if not luhn_ok(number):
            return {"ok": False, "error": "Your card number is incorrect."}
        if number not in TEST_CARDS:
            return {"ok": False, "error": NON_TEST_CARD}
        ok, decline_code = TEST_CARDS[number]
        if not ok:
            return {"ok": False, "error": DECLINE_MESSAGES.get(decline_code, "Your card was declined."),
                    "decline_code": decline_code}

        name = (name or "").strip() or None
        if customer is None:
            customer = self._create_customer(email=email, name=name)
        pm = self._attach_card(customer, number, email=email, name=name)
        items = self._session_items[session_id]
        sub = self._create_subscription(customer, items, pm["id"],
                                        metadata=self._session_subscription_data[session_id].get("metadata"))
        invoice = self._create_invoice(sub, "subscription_create",
                                       sub["current_period_start"], sub["current_period_end"])
        sub["latest_invoice"] = invoice["id"]
        session.update(status="complete", payment_status="paid", customer=customer["id"],
                       subscription=sub["id"], invoice=invoice["id"], url=None,
                       customer_details=shapes.customer_details(customer))
        self._emit("checkout.session.completed", session)
        self._emit("customer.subscription.created", sub)
        self._emit("invoice.created", invoice)
        self._finalize_invoice(invoice)
        self._mark_invoice_paid(invoice)
        redirect = session["success_url"].replace("{CHECKOUT_SESSION_ID}", session_id)
        return {"ok": True, "redirect": redirect, "customer": customer["id"], "subscription": sub["id"],
                "invoice": invoice["id"]}

    def _expire_session(self, session_id: str):
        session = self.objects[session_id]
        session.update(status="expired", url=None)
        self._emit("checkout.session.expired", session)

    # -- subscriptions and invoices ----------------------------------------------------------
    def _create_subscription(self, customer: dict, items: list[dict], pm_id: str, metadata=None) -> dict:
        sub_id = shapes.new_id("sub_")
        now = self.now()
        first_price = items[0]["price"]
        period_end = shapes.add_interval(now, first_price["recurring"]["interval"],
                                         first_price["recurring"]["interval_count"])
        sub_items = [shapes.subscription_item(item_id=shapes.new_id("si_", 14), subscription_id=sub_id,
                                              price_obj=self.objects[item["price"]["id"]],
                                              quantity=item["quantity"], created=now,
                                              period_start=now, period_end=period_end)
                     for item in items]
        sub = shapes.subscription(subscription_id=sub_id, customer_id=customer["id"], items=sub_items,
                                  created=now, period_start=now, period_end=period_end,
                                  currency=first_price["currency"], metadata=copy.deepcopy(metadata or {}),
                                  default_payment_method=pm_id)
        self._cycles[sub_id] = 1
        return self._store(sub)

    def _create_invoice(self, sub: dict, billing_reason: str, period_start: int, period_end: int) -> dict:
        customer = self.objects[sub["customer"]]
        invoice_id = shapes.new_id("in_")
        lines = []
        for item in sub["items"]["data"]:
            product = self.objects.get(item["price"]["product"], {})
            description = f"{item['quantity']} × {product.get('name', 'Subscription')} " \
                          f"(at ${item['price']['unit_amount'] / 100:.2f} / {item['price']['recurring']['interval']})"
            lines.append(shapes.invoice_line(line_id=shapes.new_id("il_"), invoice_id=invoice_id,
                                             subscription_id=sub["id"], item=item, period_start=period_start,
                                             period_end=period_end, description=description))
        invoice = shapes.invoice(invoice_id=invoice_id, customer_obj=customer, subscription_obj=sub,
                                 lines=lines, created=self.now(), billing_reason=billing_reason,
                                 account_name=self.account["settings"]["dashboard"]["display_name"])
        return self._store(invoice)

    def _finalize_invoice(self, invoice: dict):
        customer = self.objects[invoice["customer"]]
        number = f"{customer['invoice_prefix']}-{customer['next_invoice_sequence']:04d}"
        customer["next_invoice_sequence"] += 1
        now = self.now()
        invoice.update(status="open", number=number, effective_at=now,
                       hosted_invoice_url=f"{self.base_url}/invoices/{invoice['id']}",
                       invoice_pdf=f"{self.base_url}/invoices/{invoice['id']}/pdf",
                       automatically_finalizes_at=None)
        invoice["status_transitions"]["finalized_at"] = now
        self._emit("invoice.finalized", invoice)

    def _mark_invoice_paid(self, invoice: dict):
        now = self.now()
        invoice.update(status="paid", attempted=True, attempt_count=invoice["attempt_count"] + 1,
                       amount_paid=invoice["amount_due"], amount_remaining=0, next_payment_attempt=None)
        invoice["status_transitions"]["paid_at"] = now
        self._emit("invoice.paid", invoice)
        self._emit("invoice.payment_succeeded", invoice)

    def _attempt_invoice(self, invoice: dict, pm_id: str | None = None) -> tuple[bool, str | None]:
        """Charge the invoice; on success mark it paid and bring its subscription back to active."""
        customer = self.objects[invoice["customer"]]
        sub = self.objects.get(invoice["subscription"])
        pm_id = pm_id or invoice["default_payment_method"] or (sub or {}).get("default_payment_method")
        ok, decline_code = self._charge_ok(customer, pm_id)
        if ok:
            self._mark_invoice_paid(invoice)
            if sub and sub["status"] == "past_due" and sub["latest_invoice"] == invoice["id"]:
                sub["status"] = "active"
                self._emit("customer.subscription.updated", sub, {"status": "past_due"})
        return ok, decline_code

    def _record_failure(self, invoice: dict):
        now = self.now()
        first = self._first_failure.setdefault(invoice["id"], now)
        invoice["attempted"] = True
        invoice["attempt_count"] += 1
        retries_done = invoice["attempt_count"] - 1
        if retries_done < len(self.retry_days):
            invoice["next_payment_attempt"] = first + self.retry_days[retries_done] * DAY
        else:
            invoice["next_payment_attempt"] = None
        self._emit("invoice.payment_failed", invoice)

    def _renew_subscription(self, sub_id: str):
        sub = self.objects[sub_id]
        if sub["cancel_at_period_end"] or (sub["cancel_at"] and sub["cancel_at"] <= sub["current_period_end"]):
            self._cancel_subscription(sub, reason="cancellation_requested")
            return
        previous = {k: sub[k] for k in ("current_period_start", "current_period_end", "latest_invoice")}
        price = sub["items"]["data"][0]["price"]
        self._cycles[sub_id] += 1
        start = sub["current_period_end"]
        end = shapes.add_interval(sub["billing_cycle_anchor"], price["recurring"]["interval"],
                                  price["recurring"]["interval_count"] * self._cycles[sub_id])
        sub.update(current_period_start=start, current_period_end=end)
        for item in sub["items"]["data"]:
            item.update(current_period_start=start, current_period_end=end)
        invoice = self._create_invoice(sub, "subscription_cycle", start, end)
        sub["latest_invoice"] = invoice["id"]
        self._emit("invoice.created", invoice)
        self._finalize_invoice(invoice)
        customer = self.objects[sub["customer"]]
        ok, _ = self._charge_ok(customer, sub["default_payment_method"])
        if ok:
            self._mark_invoice_paid(invoice)
            if sub["status"] == "past_due":
                previous["status"] = "past_due"
                sub["status"] = "active"
        else:
            self._record_failure(invoice)
            if sub["status"] != "past_due":
                previous["status"] = sub["status"]
                sub["status"] = "past_due"
        self._emit("customer.subscription.updated", sub, previous)
        if not ok and invoice["next_payment_attempt"] is None:
            self._exhaust_retries(invoice)

    def _retry_invoice(self, invoice_id: str):
        invoice = self.objects[invoice_id]
        ok, _ = self._attempt_invoice(invoice)
        if not ok:
            self._record_failure(invoice)
            if invoice["next_payment_attempt"] is None:
                self._exhaust_retries(invoice)

    def _exhaust_retries(self, invoice: dict):
        """All retries failed: mark the invoice uncollectible and cancel its subscription."""
        invoice["status"] = "uncollectible"
        invoice["status_transitions"]["marked_uncollectible_at"] = self.now()
        self._emit("invoice.marked_uncollectible", invoice)
        sub = self.objects.get(invoice["subscription"])
        if sub and sub["status"] != "canceled":
            self._cancel_subscription(sub, reason="payment_failed")

    def _cancel_scheduled(self, sub_id: str):
        self._cancel_subscription(self.objects[sub_id], reason="cancellation_requested")

    def _cancel_subscription(self, sub: dict, *, reason: str, comment=None, feedback=None):
        now = self.now()
        sub.update(status="canceled", ended_at=now, canceled_at=sub["canceled_at"] or now,
                   cancel_at_period_end=False)
        sub["cancellation_details"].update(reason=reason)
        if comment is not None:
            sub["cancellation_details"]["comment"] = comment
        if feedback is not None:
            sub["cancellation_details"]["feedback"] = feedback
        self._emit("customer.subscription.deleted", sub)

    def _schedule_cancel(self, sub: dict, at_period_end: bool) -> dict:
        """Set or clear cancel_at_period_end; returns previous attributes for the event."""
        previous = {k: sub[k] for k in ("cancel_at_period_end", "cancel_at", "canceled_at")}
        previous["cancellation_details"] = copy.deepcopy(sub["cancellation_details"])
        if at_period_end:
            sub.update(cancel_at_period_end=True, cancel_at=sub["current_period_end"], canceled_at=self.now())
            sub["cancellation_details"]["reason"] = "cancellation_requested"
        else:
            sub.update(cancel_at_period_end=False, cancel_at=None, canceled_at=None)
            sub["cancellation_details"]["reason"] = None
        return {k: v for k, v in previous.items() if sub[k] != v}

    # -- HTTP entry point --------------------------------------------------------------------
    def handle(self, request: Request) -> Response:
        path = request.path
        if path.startswith("/v1/") or path == "/v1":
            return self._api(request)
        if path.startswith("/_sandbox/") or path == "/_sandbox":
            return self._control(request)
        with self.lock:
            self._run_due(self.now())
            return pages.route(self, request)

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
        if replayed:
            headers["Idempotent-Replayed"] = "true"
        if isinstance(body, bytes):
            return Response(status, body, headers, content_type="application/json")
        return Response(status, body, headers)

    def _api_locked(self, request: Request, request_id: str):
        try:
            self._authenticate(request)
        except StripeError as exc:
            return exc.status, exc.body, False
        key = request.headers.get("Idempotency-Key") if request.method == "POST" else None
        fingerprint = None
        if key:
            fingerprint = hashlib.sha256(f"{request.method} {request.path}\n".encode() + request.body).hexdigest()
            cached = self._idempotency.get(key)
            if cached:
                if cached[0] != fingerprint:
                    return 400, {"error": {"type": "idempotency_error", "message": (
                        "Keys for idempotent requests can only be used with the same parameters they "
                        f"were first used with. Try using a key other than '{key}' if you meant to "
                        "execute a different request.")}}, False
                return cached[1], cached[2], True
        self._request_context = (request_id, key)
        try:
            self._run_due(self.now())
            self._request_context = (request_id, key)
            status, body = 200, self._route(request)
        except ParamError as exc:
            status, body = 400, StripeError(400, str(exc), param=exc.param).body
        except StripeError as exc:
            status, body = exc.status, exc.body
        finally:
            self._request_context = (None, None)
        encoded = json.dumps(body, indent=2).encode()
        if key and (status < 300 or status == 402):  # Stripe saves results once execution began
            self._idempotency[key] = (fingerprint, status, encoded)
        return status, encoded, False

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

    # routes: (method, pattern, handler name)
    ROUTES = [
        ("GET", r"/v1/account", "account_retrieve"),
        ("GET", r"/v1/accounts/(?P<id>[^/]+)", "account_retrieve"),
        ("POST", r"/v1/products", "product_create"),
        ("GET", r"/v1/products", "product_list"),
        ("GET", r"/v1/products/(?P<id>[^/]+)", "product_retrieve"),
        ("POST", r"/v1/prices", "price_create"),
        ("GET", r"/v1/prices", "price_list"),
        ("GET", r"/v1/prices/(?P<id>[^/]+)", "price_retrieve"),
        ("POST", r"/v1/customers", "customer_create"),
        ("GET", r"/v1/customers", "customer_list"),
        ("GET", r"/v1/customers/search", "customer_search"),
        ("GET", r"/v1/customers/(?P<id>[^/]+)", "customer_retrieve"),
        ("POST", r"/v1/customers/(?P<id>[^/]+)", "customer_update"),
        ("DELETE", r"/v1/customers/(?P<id>[^/]+)", "customer_delete"),
        ("GET", r"/v1/customers/(?P<id>[^/]+)/payment_methods", "customer_payment_methods"),
        ("GET", r"/v1/payment_methods", "payment_method_list"),
        ("GET", r"/v1/payment_methods/(?P<id>[^/]+)", "payment_method_retrieve"),
        ("POST", r"/v1/checkout/sessions", "checkout_session_create"),
        ("GET", r"/v1/checkout/sessions", "checkout_session_list"),
        ("GET", r"/v1/checkout/sessions/(?P<id>[^/]+)", "checkout_session_retrieve"),
        ("GET", r"/v1/checkout/sessions/(?P<id>[^/]+)/line_items", "checkout_session_line_items"),
        ("POST", r"/v1/checkout/sessions/(?P<id>[^/]+)/expire", "checkout_session_expire"),
        ("POST", r"/v1/billing_portal/sessions", "portal_session_create"),
        ("GET", r"/v1/subscriptions", "subscription_list"),
        ("GET", r"/v1/subscriptions/search", "subscription_search"),
        ("GET", r"/v1/subscriptions/(?P<id>[^/]+)", "subscription_retrieve"),
        ("POST", r"/v1/subscriptions/(?P<id>[^/]+)", "subscription_update"),
        ("DELETE", r"/v1/subscriptions/(?P<id>[^/]+)", "subscription_cancel"),
        ("GET", r"/v1/invoices", "invoice_list"),
        ("GET", r"/v1/invoices/(?P<id>[^/]+)", "invoice_retrieve"),
        ("GET", r"/v1/invoices/(?P<id>[^/]+)/lines", "invoice_lines"),
        ("POST", r"/v1/invoices/(?P<id>[^/]+)/pay", "invoice_pay"),
        ("POST", r"/v1/webhook_endpoints", "webhook_endpoint_create"),
        ("GET", r"/v1/webhook_endpoints", "webhook_endpoint_list"),
        ("GET", r"/v1/webhook_endpoints/(?P<id>[^/]+)", "webhook_endpoint_retrieve"),
        ("POST", r"/v1/webhook_endpoints/(?P<id>[^/]+)", "webhook_endpoint_update"),
        ("DELETE", r"/v1/webhook_endpoints/(?P<id>[^/]+)", "webhook_endpoint_delete"),
        ("GET", r"/v1/events", "event_list"),
        ("GET", r"/v1/events/(?P<id>[^/]+)", "event_retrieve"),
    ]
    _COMPILED = [(m, re.compile(p + r"/?"), h) for m, p, h in ROUTES]

    def _route(self, request: Request):
        params = decode_query(request.query)
        if request.method == "POST":
            params.update(decode_body(request.body))
        for method, pattern, handler in self._COMPILED:
            match = pattern.fullmatch(request.path)
            if match and method == request.method:
                expand = [e for e in as_list(params.pop("expand", None)) if isinstance(e, str)]
                result = getattr(self, "_api_" + handler)(params, **match.groupdict())
                return self._expand(result, expand)
        raise StripeError(404, (
            f"Unrecognized request URL ({request.method}: {request.path}). Please see "
            "https://stripe.com/docs or we can help at https://support.stripe.com/. "
            "(The Stripe sandbox emulates only the calls listed in sandbox/stripe/README.md.)"))

    # -- expansion and lists -----------------------------------------------------------------
    def _render(self, obj: dict) -> dict:
        return copy.deepcopy(obj)

    def _expand(self, result: dict, paths: list[str]) -> dict:
        result = copy.deepcopy(result)
        for path in paths:
            parts = path.split(".")
            if result.get("object") == "list":
                if parts[0] != "data":
                    continue
                parts = parts[1:]
            self._expand_path(result, parts)
        return result

    def _expand_path(self, node, parts: list[str]):
        if not parts or node is None:
            return
        if isinstance(node, list):
            for item in node:
                self._expand_path(item, parts)
            return
        if not isinstance(node, dict):
            return
        head, rest = parts[0], parts[1:]
        if node.get("object") == "list" and head == "data":
            self._expand_path(node["data"], rest)
            return
        if head not in node:
            virtual = self._virtual_field(node, head)
            if virtual is None:
                return
            node[head] = virtual
        value = node[head]
        if isinstance(value, str) and value in self.objects:
            node[head] = value = copy.deepcopy(self.objects[value])
        self._expand_path(value, rest)

    def _virtual_field(self, node: dict, field: str):
        """Fields Stripe only includes when expanded."""
        kind = node.get("object")
        if kind == "checkout.session" and field == "line_items":
            items = self._session_items.get(node.get("id"), [])
            return {"object": "list", "data": copy.deepcopy(items), "has_more": False,
                    "url": f"/v1/checkout/sessions/{node['id']}/line_items"}
        if kind == "customer" and field == "sources":
            return shapes.empty_list(f"/v1/customers/{node['id']}/sources")
        if field == "breakdown" and {"amount_discount", "amount_tax"} <= set(node):
            return {"discounts": [], "taxes": []}
        return None

    def _list(self, items: list[dict], params: dict, url: str) -> dict:
        """Stripe's list envelope; `items` newest first."""
        limit = as_int(params.get("limit", 10), "limit")
        if not 1 <= limit <= 100:
            raise StripeError(400, "Invalid integer: limit must be between 1 and 100", param="limit")
        ids = [item["id"] for item in items]
        after, before = params.get("starting_after"), params.get("ending_before")
        if after:
            if after not in ids:
                raise StripeError(400, f"No such object: '{after}'", code="resource_missing", param="starting_after")
            page = items[ids.index(after) + 1:]
            data, has_more = page[:limit], len(page) > limit
        elif before:
            if before not in ids:
                raise StripeError(400, f"No such object: '{before}'", code="resource_missing", param="ending_before")
            page = items[:ids.index(before)]
            data, has_more = page[-limit:], len(page) > limit
        else:
            data, has_more = items[:limit], len(items) > limit
        return {"object": "list", "data": [self._render(i) for i in data], "has_more": has_more, "url": url}

    def _newest_first(self, kind: str) -> list[dict]:
        return [self.objects[i] for i in reversed(self._ids[kind]) if not self.objects[i].get("deleted")]

    @staticmethod
    def _created_filter(items: list[dict], created) -> list[dict]:
        if created in (None, ""):
            return items
        if not isinstance(created, dict):
            value = as_int(created, "created")
            return [i for i in items if i["created"] == value]
        checks = {"gt": lambda a, b: a > b, "gte": lambda a, b: a >= b,
                  "lt": lambda a, b: a < b, "lte": lambda a, b: a <= b}
        for op, value in created.items():
            if op not in checks:
                raise StripeError(400, f"Received unknown parameter: created[{op}]", param=f"created[{op}]")
            bound = as_int(value, f"created[{op}]")
            items = [i for i in items if checks[op](i["created"], bound)]
        return items

    _CLAUSE = re.compile(r"\s*(-?)(metadata\[['\"]([^'\"]+)['\"]\]|[a-z_]+)\s*(:|~)\s*['\"]([^'\"]*)['\"]\s*")

    def _search(self, kind: str, params: dict, fields: set[str]) -> dict:
        """Stripe's search: `field:'value'`, `field~'part'`, `metadata['key']:'value'`, `-` negates,
        clauses joined by AND or by OR (not both). Pages are offsets in `page`."""
        query = params.get("query")
        if not query:
            raise StripeError(400, "Missing required param: query.", code="parameter_missing", param="query")
        joiner = " OR " if " OR " in query else " AND "
        if joiner == " OR " and " AND " in query:
            raise StripeError(400, "Queries cannot mix AND and OR.", param="query")
        tests = []
        for clause in query.split(joiner):
            match = self._CLAUSE.fullmatch(clause)
            if not match or (not match.group(3) and match.group(2) not in fields):
                raise StripeError(400, f"Invalid search query near '{clause.strip()}'. The sandbox supports "
                                       f"{', '.join(sorted(fields))} and metadata['key'].", param="query")
            negate, field, meta_key, op, value = match.groups()

            def test(obj, field=field, meta_key=meta_key, op=op, value=value, negate=negate):
                actual = (obj.get("metadata") or {}).get(meta_key) if meta_key else obj.get(field)
                actual = "" if actual is None else str(actual)
                hit = value.lower() in actual.lower() if op == "~" else actual == value
                return hit != bool(negate)
            tests.append(test)
        combine = any if joiner == " OR " else all
        items = [o for o in self._newest_first(kind) if combine(t(o) for t in tests)]
        limit = as_int(params.get("limit", 10), "limit")
        offset = as_int(params.get("page") or 0, "page")
        data = items[offset:offset + limit]
        more = offset + limit < len(items)
        return {"object": "search_result", "data": [self._render(o) for o in data], "has_more": more,
                "next_page": str(offset + limit) if more else None, "url": f"/v1/{kind}s/search"}

    def _api_customer_search(self, params):
        return self._search("customer", params, {"email", "name", "phone", "created"})

    def _api_subscription_search(self, params):
        return self._search("subscription", params, {"status", "customer", "created"})

    @staticmethod
    def _allow(params: dict, allowed: set[str]):
        for key in params:
            if key not in allowed:
                raise StripeError(400, f"Received unknown parameter: {key}", param=key)

    @staticmethod
    def _metadata(current: dict, given) -> dict:
        """Stripe's metadata update: keys merge, an empty value removes a key, '' clears all."""
        if given in (None,):
            return current
        if given == "":
            return {}
        if not isinstance(given, dict):
            raise StripeError(400, "Invalid object", param="metadata")
        merged = dict(current)
        for key, value in given.items():
            if value == "":
                merged.pop(key, None)
            else:
                merged[key] = str(value)
        return merged

    # -- API handlers ------------------------------------------------------------------------
    def _api_account_retrieve(self, params, id=None):
        if id is not None and id != self.account["id"]:
            raise StripeError(403, f"The provided key does not have access to account '{id}' (or that "
                                   "account does not exist). Application access may have been revoked.",
                              type="invalid_request_error", code="account_invalid")
        return self.account

    def _api_product_create(self, params):
        self._allow(params, {"name", "id", "description", "metadata", "active", "images", "url",
                             "statement_descriptor", "unit_label", "tax_code", "default_price_data"})
        if not params.get("name"):
            raise StripeError(400, "Missing required param: name.", code="parameter_missing", param="name")
        product_id = params.get("id") or shapes.new_id("prod_", 14)
        if product_id in self.objects:
            raise StripeError(400, f"Product already exists.", code="resource_already_exists", param="id")
        product = shapes.product(product_id=product_id, name=params["name"], created=self.now(),
                                 description=params.get("description"),
                                 metadata=self._metadata({}, params.get("metadata")),
                                 active=as_bool(params.get("active", "true"), "active"))
        self._store(product)
        self._emit("product.created", product)
        return product

    def _api_product_list(self, params):
        items = self._newest_first("product")
        if "active" in params:
            active = as_bool(params.pop("active"), "active")
            items = [p for p in items if p["active"] == active]
        return self._list(self._created_filter(items, params.get("created")), params, "/v1/products")

    def _api_product_retrieve(self, params, id):
        return self._get("product", id)

    def _api_price_create(self, params):
        self._allow(params, {"currency", "unit_amount", "unit_amount_decimal", "product", "product_data",
                             "recurring", "nickname", "lookup_key", "metadata", "active",
                             "tax_behavior", "billing_scheme", "transfer_lookup_key"})
        for required in ("currency",):
            if not params.get(required):
                raise StripeError(400, f"Missing required param: {required}.", code="parameter_missing",
                                  param=required)
        if "unit_amount" not in params:
            raise StripeError(400, "Missing required param: unit_amount.", code="parameter_missing",
                              param="unit_amount")
        unit_amount = as_int(params["unit_amount"], "unit_amount")
        if unit_amount < 0:
            raise StripeError(400, "Invalid non-negative integer", param="unit_amount")
        if params.get("product"):
            product = self._get("product", params["product"], "product")
        elif isinstance(params.get("product_data"), dict) and params["product_data"].get("name"):
            product = self._store(shapes.product(product_id=shapes.new_id("prod_", 14),
                                                 name=params["product_data"]["name"], created=self.now()))
            self._emit("product.created", product)
        else:
            raise StripeError(400, "You must specify either `product` or `product_data` when creating a price.",
                              param="product")
        recurring = params.get("recurring") or {}
        interval = recurring.get("interval") if isinstance(recurring, dict) else None
        if recurring and interval not in ("day", "week", "month", "year"):
            raise StripeError(400, f"Invalid recurring[interval]: must be one of day, week, month, or year",
                              param="recurring[interval]")
        price = shapes.price(price_id=shapes.new_id("price_"), product_id=product["id"],
                             unit_amount=unit_amount, currency=params["currency"].lower(), created=self.now(),
                             interval=interval,
                             interval_count=as_int(recurring.get("interval_count", 1), "recurring[interval_count]")
                             if recurring else 1,
                             nickname=params.get("nickname"), lookup_key=params.get("lookup_key"),
                             metadata=self._metadata({}, params.get("metadata")))
        self._store(price)
        if product["default_price"] is None:
            product["default_price"] = price["id"]
        self._emit("price.created", price)
        return price

    def _api_price_list(self, params):
        items = self._newest_first("price")
        for key in ("product", "currency", "type"):
            if key in params:
                value = params.pop(key)
                items = [p for p in items if p[key] == value]
        if "active" in params:
            active = as_bool(params.pop("active"), "active")
            items = [p for p in items if p["active"] == active]
        if "lookup_keys" in params:
            keys = as_list(params.pop("lookup_keys"))
            items = [p for p in items if p["lookup_key"] in keys]
        return self._list(self._created_filter(items, params.get("created")), params, "/v1/prices")

    def _api_price_retrieve(self, params, id):
        return self._get("price", id)

    CUSTOMER_FIELDS = {"email", "name", "phone", "description", "metadata", "invoice_settings",
                       "payment_method", "address", "shipping", "preferred_locales", "tax_exempt",
                       "balance", "invoice_prefix", "source", "test_clock", "tax", "tax_id_data",
                       "next_invoice_sequence", "coupon", "promotion_code", "cash_balance"}

    def _api_customer_create(self, params):
        self._allow(params, self.CUSTOMER_FIELDS)
        customer = self._create_customer(email=params.get("email") or None, name=params.get("name") or None,
                                         phone=params.get("phone") or None,
                                         description=params.get("description") or None,
                                         metadata=self._metadata({}, params.get("metadata")))
        return customer

    def _api_customer_list(self, params):
        items = self._newest_first("customer")
        if "email" in params:  # Stripe's email filter is exact and case-sensitive
            email = params.pop("email")
            items = [c for c in items if c["email"] == email]
        return self._list(self._created_filter(items, params.get("created")), params, "/v1/customers")

    def _api_customer_retrieve(self, params, id):
        obj = self.objects.get(id)
        if obj is not None and obj.get("object") == "customer" and obj.get("deleted"):
            return obj  # Stripe answers a deleted customer's stub, not a 404
        return self._get("customer", id)

    def _api_customer_update(self, params, id):
        self._allow(params, self.CUSTOMER_FIELDS - {"payment_method"} | {"default_source"})
        customer = self._get("customer", id)
        previous = {}
        for field in ("email", "name", "phone", "description"):
            if field in params:
                value = params[field] or None
                if customer[field] != value:
                    previous[field] = customer[field]
                    customer[field] = value
        if "metadata" in params:
            metadata = self._metadata(customer["metadata"], params["metadata"])
            if metadata != customer["metadata"]:
                previous["metadata"] = customer["metadata"]
                customer["metadata"] = metadata
        settings = params.get("invoice_settings")
        if isinstance(settings, dict) and "default_payment_method" in settings:
            pm_id = settings["default_payment_method"] or None
            if pm_id:
                pm = self._get("payment_method", pm_id, "invoice_settings[default_payment_method]")
                if pm["customer"] != id:
                    raise StripeError(400, f"The customer does not have a payment method with the ID {pm_id}. "
                                           "The payment method must be attached to the customer.",
                                      param="invoice_settings[default_payment_method]")
            if customer["invoice_settings"]["default_payment_method"] != pm_id:
                previous["invoice_settings"] = copy.deepcopy(customer["invoice_settings"])
                customer["invoice_settings"]["default_payment_method"] = pm_id
                self._card_override.pop(id, None)
        if previous:
            self._emit("customer.updated", customer, previous)
        return customer

    def _api_customer_delete(self, params, id):
        customer = self._get("customer", id)
        for sid in self._ids["subscription"]:
            sub = self.objects[sid]
            if sub["customer"] == id and sub["status"] != "canceled":
                self._cancel_subscription(sub, reason="cancellation_requested")
        self._emit("customer.deleted", customer)
        self.objects[id] = {"id": id, "object": "customer", "deleted": True}
        return self.objects[id]

    def _api_customer_payment_methods(self, params, id):
        self._get("customer", id)
        params["customer"] = id
        return self._api_payment_method_list(params, url=f"/v1/customers/{id}/payment_methods")

    def _api_payment_method_list(self, params, url="/v1/payment_methods"):
        items = self._newest_first("payment_method")
        customer = params.pop("customer", None)
        if customer:
            self._get("customer", customer, "customer")
            items = [p for p in items if p["customer"] == customer]
        kind = params.pop("type", None)
        if kind:
            items = [p for p in items if p["type"] == kind]
        return self._list(items, params, url)

    def _api_payment_method_retrieve(self, params, id):
        return self._get("payment_method", id)

    CHECKOUT_FIELDS = {"mode", "line_items", "customer", "customer_email", "client_reference_id",
                       "metadata", "subscription_data", "success_url", "cancel_url", "expires_at",
                       "payment_method_types", "locale", "allow_promotion_codes",
                       "billing_address_collection", "customer_update", "automatic_tax",
                       "tax_id_collection", "consent_collection", "phone_number_collection",
                       "payment_method_collection", "ui_mode", "return_url", "custom_text",
                       "submit_type", "discounts", "currency", "customer_creation",
                       "payment_method_configuration", "saved_payment_method_options"}

    def _api_checkout_session_create(self, params):
        self._allow(params, self.CHECKOUT_FIELDS)
        mode = params.get("mode")
        if not mode:
            raise StripeError(400, "Missing required param: mode.", code="parameter_missing", param="mode")
        if mode != "subscription":
            raise StripeError(400, f"The Stripe sandbox supports Checkout only in subscription mode, not '{mode}'.",
                              param="mode")
        if not params.get("success_url") and params.get("ui_mode") not in ("embedded", "custom"):
            raise StripeError(400, "Missing required param: success_url.", code="parameter_missing",
                              param="success_url")
        if params.get("customer") and params.get("customer_email"):
            raise StripeError(400, "You may only specify one of these parameters: customer, customer_email.",
                              param="customer_email")
        customer = self._get("customer", params["customer"], "customer") if params.get("customer") else None
        raw_items = params.get("line_items")
        if not isinstance(raw_items, list) or not raw_items:
            raise StripeError(400, "Missing required param: line_items.", code="parameter_missing",
                              param="line_items")
        items, currency, interval = [], None, None
        for index, raw in enumerate(raw_items):
            if not isinstance(raw, dict) or not raw.get("price"):
                raise StripeError(400, f"Missing required param: line_items[{index}][price].",
                                  code="parameter_missing", param=f"line_items[{index}][price]")
            price = self._get("price", raw["price"], f"line_items[{index}][price]")
            quantity = as_int(raw.get("quantity", 1), f"line_items[{index}][quantity]")
            if quantity < 1:
                raise StripeError(400, "Quantity must be at least 1.", param=f"line_items[{index}][quantity]")
            if price["type"] != "recurring":
                raise StripeError(400, "You must provide at least one recurring price in `subscription` mode "
                                       "when using prices.", param=f"line_items[{index}][price]")
            if not price["active"]:
                raise StripeError(400, f"The price specified is inactive. This field only accepts active prices.",
                                  param=f"line_items[{index}][price]")
            if currency and price["currency"] != currency or interval and price["recurring"]["interval"] != interval:
                raise StripeError(400, "All prices on a subscription must have the same currency and "
                                       "recurring interval.", param=f"line_items[{index}][price]")
            currency, interval = price["currency"], price["recurring"]["interval"]
            product = self.objects[price["product"]]
            items.append(shapes.checkout_line_item(item_id=shapes.new_id("li_"), price_obj=price,
                                                   product_name=product["name"], quantity=quantity))
        now = self.now()
        expires_at = as_int(params["expires_at"], "expires_at") if params.get("expires_at") else \
            now + self.checkout_expires_seconds
        if not now + 1800 <= expires_at <= now + DAY:
            raise StripeError(400, "The `expires_at` timestamp must be between 30 minutes and 24 hours "
                                   "from Checkout Session creation.", param="expires_at")
        subscription_data = params.get("subscription_data") or {}
        if not isinstance(subscription_data, dict):
            raise StripeError(400, "Invalid object", param="subscription_data")
        session_id = "cs_test_" + shapes.new_id("", 58)
        session = shapes.checkout_session(
            session_id=session_id, created=now, expires_at=expires_at,
            url=f"{self.base_url}/checkout/{session_id}", mode=mode, currency=currency,
            amount=sum(i["amount_total"] for i in items), success_url=params.get("success_url"),
            cancel_url=params.get("cancel_url"), customer_id=customer["id"] if customer else None,
            customer_email=params.get("customer_email") or None,
            client_reference_id=params.get("client_reference_id") or None,
            metadata=self._metadata({}, params.get("metadata")), locale=params.get("locale"))
        self._store(session)
        self._session_items[session_id] = items
        self._session_subscription_data[session_id] = {
            "metadata": self._metadata({}, subscription_data.get("metadata"))}
        return session

    def _api_checkout_session_list(self, params):
        items = self._newest_first("checkout.session")
        for key in ("customer", "subscription", "status", "payment_intent"):
            if key in params:
                value = params.pop(key)
                items = [s for s in items if s[key] == value]
        return self._list(self._created_filter(items, params.get("created")), params, "/v1/checkout/sessions")

    def _api_checkout_session_retrieve(self, params, id):
        return self._get("checkout.session", id)

    def _api_checkout_session_line_items(self, params, id):
        self._get("checkout.session", id)
        return self._list(self._session_items[id], params, f"/v1/checkout/sessions/{id}/line_items")

    def _api_checkout_session_expire(self, params, id):
        session = self._get("checkout.session", id)
        if session["status"] != "open":
            raise StripeError(400, f"Only Checkout Sessions with a status in [\"open\"] can be expired. "
                                   f"This Checkout Session has a status of \"{session['status']}\".")
        self._expire_session(id)
        return session

    def _api_portal_session_create(self, params):
        self._allow(params, {"customer", "return_url", "configuration", "flow_data", "locale", "on_behalf_of"})
        if not params.get("customer"):
            raise StripeError(400, "Missing required param: customer.", code="parameter_missing", param="customer")
        customer = self._get("customer", params["customer"], "customer")
        session_id = shapes.new_id("bps_")
        session = shapes.portal_session(session_id=session_id, created=self.now(), customer_id=customer["id"],
                                        return_url=params.get("return_url"),
                                        url=f"{self.base_url}/portal/{session_id}")
        return self._store(session)

    def _api_subscription_list(self, params):
        items = self._newest_first("subscription")
        status = params.pop("status", None)
        if status is None:
            items = [s for s in items if s["status"] not in ("canceled", "incomplete_expired")]
        elif status == "ended":
            items = [s for s in items if s["status"] in ("canceled", "incomplete_expired")]
        elif status != "all":
            items = [s for s in items if s["status"] == status]
        for key in ("customer", "price"):
            if key in params:
                value = params.pop(key)
                items = [s for s in items if (s[key] == value if key == "customer"
                                              else any(i["price"]["id"] == value for i in s["items"]["data"]))]
        return self._list(self._created_filter(items, params.get("created")), params, "/v1/subscriptions")

    def _api_subscription_retrieve(self, params, id):
        return self._get("subscription", id)

    def _api_subscription_update(self, params, id):
        self._allow(params, {"cancel_at_period_end", "cancel_at", "metadata", "default_payment_method",
                             "description", "proration_behavior", "cancellation_details", "items",
                             "payment_behavior"})
        sub = self._get("subscription", id)
        if sub["status"] == "canceled" and set(params) - {"metadata", "cancellation_details"}:
            raise StripeError(400, "A canceled subscription can only update its cancellation_details and metadata.")
        previous = {}
        if "metadata" in params:
            metadata = self._metadata(sub["metadata"], params["metadata"])
            if metadata != sub["metadata"]:
                previous["metadata"] = sub["metadata"]
                sub["metadata"] = metadata
        if "description" in params and sub["description"] != (params["description"] or None):
            previous["description"] = sub["description"]
            sub["description"] = params["description"] or None
        if "default_payment_method" in params:
            pm_id = params["default_payment_method"] or None
            if pm_id:
                pm = self._get("payment_method", pm_id, "default_payment_method")
                if pm["customer"] != sub["customer"]:
                    raise StripeError(400, "The payment method must be attached to the customer.",
                                      param="default_payment_method")
            if pm_id != sub["default_payment_method"]:
                previous["default_payment_method"] = sub["default_payment_method"]
                sub["default_payment_method"] = pm_id
        details = params.get("cancellation_details")
        if isinstance(details, dict):
            old = copy.deepcopy(sub["cancellation_details"])
            for key in ("comment", "feedback"):
                if key in details:
                    sub["cancellation_details"][key] = details[key] or None
            if old != sub["cancellation_details"]:
                previous.setdefault("cancellation_details", old)
        if "cancel_at_period_end" in params:
            wanted = as_bool(params["cancel_at_period_end"], "cancel_at_period_end")
            if wanted != sub["cancel_at_period_end"]:
                previous.update({k: v for k, v in self._schedule_cancel(sub, wanted).items() if k not in previous})
        if "cancel_at" in params:
            old = {k: sub[k] for k in ("cancel_at", "canceled_at", "cancel_at_period_end")}
            if params["cancel_at"] == "":
                sub.update(cancel_at=None, canceled_at=None, cancel_at_period_end=False)
            else:
                at = as_int(params["cancel_at"], "cancel_at")
                if at <= self.now():
                    raise StripeError(400, "cancel_at must be in the future.", param="cancel_at")
                sub.update(cancel_at=at, canceled_at=self.now(),
                           cancel_at_period_end=at == sub["current_period_end"])
            previous.update({k: v for k, v in old.items() if sub[k] != v and k not in previous})
        if "items" in params:
            self._update_items(sub, as_list(params["items"]), previous)
        if previous:
            self._emit("customer.subscription.updated", sub, previous)
        return sub

    def _update_items(self, sub: dict, items: list, previous: dict):
        """Swap an item's price or quantity (no proration: the new price applies from the next period)."""
        old_items = copy.deepcopy(sub["items"])
        for index, change in enumerate(items):
            if not isinstance(change, dict) or not change.get("id"):
                raise StripeError(400, "The sandbox can only change existing items: give items[n][id].",
                                  param=f"items[{index}][id]")
            item = next((i for i in sub["items"]["data"] if i["id"] == change["id"]), None)
            if item is None:
                raise missing("subscription_item", change["id"], f"items[{index}][id]")
            if change.get("price"):
                price = self._get("price", change["price"], f"items[{index}][price]")
                if price["type"] != "recurring" or price["currency"] != sub["currency"]:
                    raise StripeError(400, "The price must be recurring and in the subscription's currency.",
                                      param=f"items[{index}][price]")
                item.update(price=copy.deepcopy(price), plan=shapes.plan_from_price(price))
            if change.get("quantity"):
                item["quantity"] = as_int(change["quantity"], f"items[{index}][quantity]")
        if old_items != sub["items"]:
            previous["items"] = old_items

    def _api_subscription_cancel(self, params, id):
        sub = self._get("subscription", id)
        if sub["status"] == "canceled":
            raise StripeError(400, f"No such subscription: '{id}'. This subscription has already been canceled.",
                              code="resource_missing", param="id")
        details = params.get("cancellation_details") if isinstance(params.get("cancellation_details"), dict) else {}
        self._cancel_subscription(sub, reason="cancellation_requested", comment=details.get("comment"),
                                  feedback=details.get("feedback"))
        return sub

    def _api_invoice_list(self, params):
        items = self._newest_first("invoice")
        for key in ("customer", "subscription", "status", "collection_method"):
            if key in params:
                value = params.pop(key)
                items = [i for i in items if i[key] == value]
        return self._list(self._created_filter(items, params.get("created")), params, "/v1/invoices")

    def _api_invoice_retrieve(self, params, id):
        return self._get("invoice", id)

    def _api_invoice_lines(self, params, id):
        invoice = self._get("invoice", id)
        return self._list(invoice["lines"]["data"], params, f"/v1/invoices/{id}/lines")

    def _api_invoice_pay(self, params, id):
        self._allow(params, {"payment_method", "paid_out_of_band", "off_session", "forgive", "source",
                             "mandate"})
        invoice = self._get("invoice", id)
        if invoice["status"] == "paid":
            raise StripeError(400, "Invoice is already paid")
        if invoice["status"] not in ("open", "uncollectible"):
            raise StripeError(400, f"You can only pay an invoice that is open or uncollectible; this one is "
                                   f"{invoice['status']}.")
        if as_bool(params.get("paid_out_of_band", "false"), "paid_out_of_band"):
            self._mark_invoice_paid(invoice)
            return invoice
        pm_id = params.get("payment_method") or None
        if pm_id:
            pm = self._get("payment_method", pm_id, "payment_method")
            if pm["customer"] != invoice["customer"]:
                raise StripeError(400, "The payment method must be attached to the invoice's customer.",
                                  param="payment_method")
        ok, decline_code = self._attempt_invoice(invoice, pm_id)
        if not ok:
            self._record_failure(invoice)
            if decline_code == "no_payment_method":
                raise StripeError(400, "This customer has no attached payment source or default payment method. "
                                       "Please consider adding a default payment method.")
            message = DECLINE_MESSAGES.get(decline_code, "Your card was declined.")
            raise StripeError(402, message, type="card_error", code="card_declined", decline_code=decline_code)
        return invoice

    def _enabled_events(self, params) -> list[str]:
        events = [e for e in as_list(params.get("enabled_events")) if isinstance(e, str) and e]
        if not events:
            raise StripeError(400, "Missing required param: enabled_events.", code="parameter_missing",
                              param="enabled_events")
        return events

    def _api_webhook_endpoint_create(self, params):
        self._allow(params, {"url", "enabled_events", "description", "metadata", "api_version", "connect"})
        if not params.get("url"):
            raise StripeError(400, "Missing required param: url.", code="parameter_missing", param="url")
        endpoint = self._store(shapes.webhook_endpoint(
            endpoint_id=shapes.new_id("we_"), url=params["url"], enabled_events=self._enabled_events(params),
            created=self.now(), api_version=params.get("api_version") or None,
            description=params.get("description") or None, metadata=self._metadata({}, params.get("metadata"))))
        self._endpoint_secrets[endpoint["id"]] = shapes.new_id("whsec_", 32)
        # Stripe shows the signing secret only in the answer to the create call.
        return {**endpoint, "secret": self._endpoint_secrets[endpoint["id"]]}

    def _api_webhook_endpoint_list(self, params):
        return self._list(self._newest_first("webhook_endpoint"), params, "/v1/webhook_endpoints")

    def _api_webhook_endpoint_retrieve(self, params, id):
        return self._get("webhook_endpoint", id)

    def _api_webhook_endpoint_update(self, params, id):
        self._allow(params, {"url", "enabled_events", "description", "metadata", "disabled"})
        endpoint = self._get("webhook_endpoint", id)
        if params.get("url"):
            endpoint["url"] = params["url"]
        if "enabled_events" in params:
            endpoint["enabled_events"] = self._enabled_events(params)
        if "description" in params:
            endpoint["description"] = params["description"] or None
        if "metadata" in params:
            endpoint["metadata"] = self._metadata(endpoint["metadata"], params["metadata"])
        if "disabled" in params:
            endpoint["status"] = "disabled" if as_bool(params["disabled"], "disabled") else "enabled"
        return endpoint

    def _api_webhook_endpoint_delete(self, params, id):
        self._get("webhook_endpoint", id)
        del self.objects[id]
        self._ids["webhook_endpoint"].remove(id)
        self._endpoint_secrets.pop(id, None)
        return {"id": id, "object": "webhook_endpoint", "deleted": True}

    def _api_event_list(self, params):
        items = list(reversed(self._events))
        if "type" in params:
            wanted = params.pop("type")
            if wanted.endswith("*"):
                items = [e for e in items if e["type"].startswith(wanted[:-1])]
            else:
                items = [e for e in items if e["type"] == wanted]
        if "types" in params:
            types = as_list(params.pop("types"))
            items = [e for e in items if e["type"] in types]
        if "delivery_success" in params:
            success = as_bool(params.pop("delivery_success"), "delivery_success")
            items = [e for e in items if e["id"] in self._delivery
                     and all(v is True for v in self._delivery[e["id"]].values()) == success]
        return self._list(self._created_filter(items, params.get("created")), params, "/v1/events")

    def _api_event_retrieve(self, params, id):
        event = self._event_by_id.get(id)
        if event is None:
            raise missing("event", id)
        return event

    # -- the control API (/_sandbox/...) -----------------------------------------------------
    def _control(self, request: Request) -> Response:
        try:
            payload = request.json() if request.body else {}
            if payload is not None and not isinstance(payload, dict):
                raise ValueError("send a JSON object")
            return self._control_route(request, payload or {})
        except (ValueError, TypeError) as exc:
            return Response(400, {"error": {"type": "invalid_request_error", "message": str(exc)}})
        except StripeError as exc:
            return Response(exc.status, exc.body)

    def _control_route(self, request: Request, payload: dict) -> Response:
        method, path = request.method, request.path.rstrip("/")
        if path == "/_sandbox/clock" and method == "GET":
            with self.lock:
                return Response(200, self._clock_state())
        if path == "/_sandbox/clock/advance" and method == "POST":
            unknown = set(payload) - {"days", "hours", "seconds"}
            if unknown or not payload:
                raise ValueError("send {\"days\": N}, {\"hours\": N} or {\"seconds\": N}")
            before = len(self._events)
            self.advance(**{k: float(v) for k, v in payload.items()})
            with self.lock:
                emitted = [e["type"] for e in self._events[before:]]
                return Response(200, {**self._clock_state(), "events": emitted})
        if path == "/_sandbox/webhook" and method == "POST":
            unknown = set(payload) - {"url", "secret"}
            if unknown:
                raise ValueError(f"unknown fields: {sorted(unknown)}")
            self.configure_webhook(url=payload.get("url"), secret=payload.get("secret"))
            return Response(200, self._webhook_state())
        if path == "/_sandbox/webhook" and method == "GET":
            return Response(200, self._webhook_state())
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
        match = re.fullmatch(r"/_sandbox/customers/([^/]+)/card", path)
        if match and method == "POST":
            result = self.set_card(match.group(1), outcome=payload.get("outcome"), card=payload.get("card"))
            return Response(200, result)
        match = re.fullmatch(r"/_sandbox/checkout/([^/]+)/pay", path)
        if match and method == "POST":
            result = self.pay_checkout(match.group(1), card=payload.get("card", "4242424242424242"),
                                       email=payload.get("email"), name=payload.get("name"))
            return Response(200 if result["ok"] else 402, result)
        return Response(404, {"error": {"type": "invalid_request_error",
                                        "message": f"Unrecognized sandbox URL ({method}: {request.path})"}})

    def _clock_state(self) -> dict:
        now = self.now()
        return {"now": now, "iso": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(now)),
                "offset_seconds": self._offset}

    def _webhook_state(self) -> dict:
        with self.lock:
            endpoint = self.objects.get(SANDBOX_ENDPOINT)
            return {"url": endpoint["url"] if endpoint else None,
                    "has_secret": SANDBOX_ENDPOINT in self._endpoint_secrets, "held": self._webhooks.held_count}
