"""Stripe event receivers: each app's `webhooks.py` registers functions for the event types it handles,
each at a stage that fixes when it runs.

    from billing_console.stripe.dispatch import Stage, receiver

    @receiver("invoice.payment_failed", stage=Stage.DUNNING)
    def open_dunning_case(event: dict) -> None:   # event is Stripe's event object (a dict)
        dunning_case_open(...)

Stripe is never called inside that transaction (it holds row locks): a receiver that needs more
than the event carries registers a preparer, which the worker runs before it opens the transaction;
what the preparer read reaches the receivers as `prepared(event)`.

    @preparer("checkout.session.completed")
    def fetch_subscription(event: dict) -> dict:   # -> {"subscription": {...}} merged into prepared(event)

`dispatch(event)` runs every receiver of the event's type by stage, inside the caller's transaction
(the worker's), so a failing receiver rolls back all of them and the event stays failed, to be
retried or replayed. The order is the stages' (then module and function name), never the order
in which apps happen to be imported, so INSTALLED_APPS can be reordered without changing it:

    CORE         checkout attempts, customers and their subscription fields, invoices: the facts
                 every later stage reads (licensing finds the customer the core just created)
    LICENSING    licences follow the customer's subscription
    DEPLOYMENTS  pause/resume decisions, taken on commit from the customer's final access state
    DUNNING      cases open and close, access locks are set or lifted
"""
from __future__ import annotations

from contextlib import contextmanager
from dataclasses import dataclass
from enum import IntEnum
from typing import Callable, Iterator

Receiver = Callable[[dict], None]


class Stage(IntEnum):
    CORE = 0
    LICENSING = 10
    DEPLOYMENTS = 20
    DUNNING = 30


@dataclass(frozen=True)
class Registration:
    event_type: str
    fn: Receiver
    stage: Stage

    @property
    def order(self) -> tuple:
        return self.stage, self.fn.__module__, self.fn.__qualname__


class ReceiverRegistry:
    def __init__(self) -> None:
        self._by_type: dict[str, list[Registration]] = {}

    def add(self, event_type: str, fn: Receiver, *, stage: Stage) -> None:
        entries = self._by_type.setdefault(event_type, [])
        if any(entry.fn is fn for entry in entries):
            return
        entries.append(Registration(event_type, fn, Stage(stage)))
        entries.sort(key=lambda entry: entry.order)

    def remove(self, event_type: str, fn: Receiver) -> None:
        self._by_type[event_type] = [entry for entry in self._by_type.get(event_type, []) if entry.fn is not fn]

    def registrations(self) -> list[Registration]:
        return [entry for entries in self._by_type.values() for entry in entries]

    def receivers_for(self, event_type: str) -> list[Receiver]:
        return [entry.fn for entry in self._by_type.get(event_type, ())]

    def event_types(self) -> list[str]:
        return sorted(t for t, entries in self._by_type.items() if entries)


registry = ReceiverRegistry()


def receiver(*event_types: str, stage: Stage) -> Callable[[Receiver], Receiver]:
    def register(fn: Receiver) -> Receiver:
        for event_type in event_types:
            registry.add(event_type, fn, stage=stage)
        return fn

    return register


@contextmanager
def receiver_added(event_type: str, fn: Receiver, *, stage: Stage) -> Iterator[Receiver]:
    """Register `fn` for the duration of a block (tests that need a failing or counting receiver)."""
    registry.add(event_type, fn, stage=stage)
    try:
        yield fn
    finally:
        registry.remove(event_type, fn)


def receivers_for(event_type: str) -> list[Receiver]:
    return registry.receivers_for(event_type)


def handled_event_types() -> list[str]:
    """Every event type some receiver handles (what the Stripe endpoint must subscribe to)."""
    return registry.event_types()


PREPARED_KEY = "console_prepared"
_preparers: dict[str, list[Callable[[dict], dict]]] = {}


def preparer(*event_types: str) -> Callable[[Callable[[dict], dict]], Callable[[dict], dict]]:
    def register(fn: Callable[[dict], dict]) -> Callable[[dict], dict]:
        for event_type in event_types:
            fns = _preparers.setdefault(event_type, [])
            if fn not in fns:
                fns.append(fn)
        return fn

    return register


def prepare(event: dict) -> dict:
    """Run the event type's preparers (outside any transaction: they may call Stripe) and return a copy
    of the event that carries what they read. Receivers see it through `prepared(event)`."""
    found: dict = {}
    for fn in _preparers.get(event.get("type", ""), ()):
        found.update(fn(event) or {})
    return {**event, PREPARED_KEY: found}


def prepared(event: dict) -> dict | None:
    """What the preparers read for this event, or None when it was dispatched without `prepare` (a
    direct call outside the worker: the receiver may then read Stripe itself, before taking locks)."""
    return event.get(PREPARED_KEY)


def dispatch(event: dict) -> int:
    """Call every receiver for this event, stage by stage; returns how many ran."""
    fns = receivers_for(event.get("type", ""))
    for fn in fns:
        fn(event)
    return len(fns)
