"""The tests' one way to build Stripe events: Stripe's own example objects, with the fields a test needs set.

`stripe_shapes.json` holds the `event`, `subscription`, `invoice`, `checkout.session`, `customer`,
`product`, `charge` and `payment_method` resources of ../shared/stripe/fixtures3.json (Stripe's OpenAPI fixtures), so an
event carries every field dj-stripe's sync and the receivers may read, not a hand-picked few.

    stripe_event("invoice.payment_failed", {"id": "in_1", "customer": "cus_1"})   # example invoice, these set
    stripe_event("customer.updated", obj={"id": "cus_x", "object": "customer"})    # exactly this object
"""
from __future__ import annotations

import copy
import itertools
import json
import time
from pathlib import Path

API_VERSION = "2026-05-27.dahlia"
_SHAPES = json.loads((Path(__file__).parent / "stripe_shapes.json").read_text())
_ids = itertools.count(1)
# Event type prefix -> the resource its data.object is.
_KINDS = (("checkout.session.", "checkout.session"), ("customer.subscription.", "subscription"),
          ("invoice.", "invoice"), ("customer.", "customer"), ("product.", "product"))


def _example(kind: str) -> dict:
    """The example object, with the placeholders that would look like real links cleared: a test names
    the subscription, customer and dates it means."""
    obj = copy.deepcopy(_SHAPES[kind])
    if kind == "subscription":
        obj.update(status="active", cancel_at=None, canceled_at=None, ended_at=None, cancel_at_period_end=False,
                   trial_start=None, trial_end=None, latest_invoice=None, schedule=None, pending_update=None,
                   metadata={})
        for item in obj["items"]["data"]:
            item["subscription"] = obj["id"]
    elif kind == "invoice":
        obj.update(subscription=None, parent=None, metadata={})
        for line in obj["lines"]["data"]:
            line.update(subscription=None, parent=None)
    elif kind == "checkout.session":
        obj.update(mode="subscription", subscription=None, invoice=None, payment_intent=None, metadata={},
                   client_reference_id=None)
    elif kind == "customer":
        obj.update(metadata={})
    elif kind == "charge":  # the example links a balance transaction, a source and a Connect account
        obj.update(customer=None, payment_intent=None, payment_method=None, balance_transaction=None, source=None,
                   transfer_data=None, review=None, metadata={})
    elif kind == "payment_method":
        obj.update(customer=None, metadata={})
    return obj


def stripe_object(kind: str, overrides: dict | None = None) -> dict:
    """Stripe's example `kind` object ("invoice", "subscription", ...) with `overrides` set (top level)."""
    obj = _example(kind)
    obj.update(copy.deepcopy(overrides or {}))
    return obj


def object_kind(event_type: str) -> str | None:
    return next((kind for prefix, kind in _KINDS if event_type.startswith(prefix)), None)


def stripe_event(event_type: str, obj_overrides: dict | None = None, *, obj: dict | None = None,
                 event_id: str | None = None, created: int | None = None, **event_fields) -> dict:
    """An event of `event_type` as Stripe delivers it. Its data.object is `obj` as given, else the
    example object of the type's resource with `obj_overrides` set. `event_fields` override the
    envelope (e.g. `livemode=True`, `api_version=None`)."""
    if obj is None:
        kind = object_kind(event_type)
        obj = stripe_object(kind, obj_overrides) if kind else dict(obj_overrides or {})
    event = copy.deepcopy(_SHAPES["event"])
    event.update(id=event_id or f"evt_test{next(_ids):010d}", type=event_type,
                 created=int(time.time()) if created is None else created, api_version=API_VERSION,
                 livemode=False, pending_webhooks=1, data={"object": obj})
    event.update(event_fields)
    return event
