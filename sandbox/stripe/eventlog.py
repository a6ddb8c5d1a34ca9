"""The one place events are built, kept and handed to webhook delivery.

`emu.emit(type, obj, previous_attributes)` snapshots `obj`, tags it with the current API request (id
and idempotency key) and queues it, signed, for every enabled webhook endpoint whose
`enabled_events` match. The log and each event's delivery state persist with the store.
"""
from __future__ import annotations

import copy

from . import shapes
from .webhooks import WebhookDelivery, event_body

SECRETS = "webhook_endpoint.secrets"  # store table: endpoint id -> whsec_...


class EventLog:
    def __init__(self, store, *, api_version: str, max_attempts: int, retry_seconds: float,
                 timeout_seconds: float, seed, on_result):
        self.store = store
        self.api_version = api_version
        self.events: list[dict] = []
        self.by_id: dict[str, dict] = {}
        self.delivery: dict[str, dict[str, bool | None]] = {}  # event -> endpoint -> delivered?
        self.request_context: tuple[str | None, str | None] = (None, None)
        self.webhooks = WebhookDelivery(max_attempts=max_attempts, retry_base_seconds=retry_seconds,
                                        timeout_seconds=timeout_seconds, seed=seed, on_result=on_result)

    def emit(self, event_type: str, obj: dict, created: int, previous_attributes=None) -> dict:
        request_id, idempotency_key = self.request_context
        event = shapes.event(event_id=shapes.new_id("evt_"), event_type=event_type,
                             obj=copy.deepcopy(obj), created=created, api_version=self.api_version,
                             previous_attributes=previous_attributes, request_id=request_id,
                             idempotency_key=idempotency_key)
        secrets = self.store.table(SECRETS)
        targets = [(we["id"], we["url"], secrets[we["id"]]) for we in self.store.all("webhook_endpoint")
                   if we["status"] == "enabled"
                   and ("*" in we["enabled_events"] or event_type in we["enabled_events"])]
        event["pending_webhooks"] = len(targets)
        self.events.append(event)
        self.by_id[event["id"]] = event
        if targets:
            self.delivery[event["id"]] = {endpoint_id: None for endpoint_id, _, _ in targets}
            self.webhooks.enqueue(event["id"], event_body(event), targets)
        return event

    def delivered(self, event_id: str, endpoint_id: str, ok: bool):
        """Called (with the emulator's lock held) after each delivery attempt."""
        state = self.delivery.get(event_id)
        if state is None:
            return
        if state.get(endpoint_id) is not True:
            state[endpoint_id] = ok
        self.by_id[event_id]["pending_webhooks"] = sum(1 for v in state.values() if v is not True)

    def state(self) -> dict:
        return {"events": self.events, "delivery": self.delivery}

    def load(self, state: dict):
        self.events = state["events"]
        self.by_id = {e["id"]: e for e in self.events}
        self.delivery = state["delivery"]
