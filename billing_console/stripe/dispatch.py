"""Stripe event receivers: each app's `webhooks.py` registers functions for the event types it handles.

    from billing_console.stripe.dispatch import receiver

    @receiver("invoice.payment_failed")
    def open_dunning_case(event: dict) -> None:   # event is Stripe's event object (a dict)
        dunning_case_open(...)

`dispatch(event)` runs every receiver of the event's type, in registration order, inside the
caller's transaction (the worker's), so a failing receiver rolls back all of them and the event
stays failed, to be retried or replayed. A type with no receiver is stored and marked ignored.
A `@preparer` runs before that transaction, for reads from Stripe a receiver needs.
"""
from __future__ import annotations

from collections import defaultdict
from typing import Callable

Receiver = Callable[[dict], None]
Preparer = Callable[[dict], dict]
_receivers: dict[str, list[Receiver]] = defaultdict(list)
_preparers: dict[str, list[Preparer]] = defaultdict(list)

# Where a preparer puts what it read for the receivers (never a Stripe field name).
PREPARED_KEY = "console_prepared"


def receiver(*event_types: str) -> Callable[[Receiver], Receiver]:
    def register(fn: Receiver) -> Receiver:
        for event_type in event_types:
            if fn not in _receivers[event_type]:
                _receivers[event_type].append(fn)
        return fn

    return register


def preparer(*event_types: str) -> Callable[[Preparer], Preparer]:
    """Register a step that runs before the event's transaction, outside it: it may call Stripe (no
    row lock is held) and returns a dict the receivers find under event[PREPARED_KEY]."""
    def register(fn: Preparer) -> Preparer:
        for event_type in event_types:
            if fn not in _preparers[event_type]:
                _preparers[event_type].append(fn)
        return fn

    return register


def prepare(event: dict) -> dict:
    """The event with what its preparers read (a copy; the stored payload is not changed)."""
    fns = _preparers.get(event.get("type", ""), ())
    if not fns:
        return event
    prepared: dict = {}
    for fn in fns:
        prepared.update(fn(event) or {})
    return {**event, PREPARED_KEY: prepared}


def receivers_for(event_type: str) -> list[Receiver]:
    return list(_receivers.get(event_type, ()))


def handled_types() -> list[str]:
    return sorted(t for t, fns in _receivers.items() if fns)


def dispatch(event: dict) -> int:
    """Call every receiver for this event; returns how many ran."""
    fns = receivers_for(event.get("type", ""))
    for fn in fns:
        fn(event)
    return len(fns)
