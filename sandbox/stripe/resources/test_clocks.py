"""Test clocks (`/v1/test_helpers/test_clocks`): customers created on a clock live on its time.

Every object has one clock: its own `test_clock`, else its customer's, else none (the sandbox's
global clock, `/_sandbox/clock`). Advancing a test clock runs the work due for that clock's objects,
each at its own moment, and leaves every other object where it was.
"""
from __future__ import annotations

import contextlib

from .. import shapes
from ..errors import StripeError, allow, missing, required
from ..params import as_int
from ..store import created_filter

DAY = 86400
# How far a clock may move in one advance: two intervals of the longest price interval (Stripe's rule).
MAX_ADVANCE_SECONDS = 2 * 366 * DAY
DELETES_AFTER = 30 * DAY


def clock_of(emu, object_id: str) -> str | None:
    """The test clock an object lives on (None: the global sandbox clock)."""
    obj = emu.store.objects.get(object_id)
    if obj is None:
        return None
    if obj.get("object") == "test_helpers.test_clock":
        return obj["id"]
    if obj.get("test_clock"):
        return obj["test_clock"]
    customer_id = obj.get("customer")
    if isinstance(customer_id, str) and customer_id != object_id:
        customer = emu.store.objects.get(customer_id)
        if customer is not None:
            return customer.get("test_clock")
    return None


def clock_now(emu, customer: dict | None) -> int:
    """The time on `customer`'s clock."""
    clock_id = (customer or {}).get("test_clock")
    if clock_id and clock_id in emu.store.objects:
        return emu.store.objects[clock_id]["frozen_time"]
    return emu.now()


@contextlib.contextmanager
def on_customer_clock(emu, customer: dict | None):
    """Run the block at the customer's clock time (every `emu.now()` inside reads it)."""
    clock_id = (customer or {}).get("test_clock")
    if not clock_id or clock_id not in emu.store.objects:
        yield
        return
    with emu.at(emu.store.objects[clock_id]["frozen_time"]):
        yield


def test_clock_object(*, clock_id: str, name, frozen_time: int, created: int) -> dict:
    obj = shapes.example("test_helpers.test_clock")
    obj.update(id=clock_id, name=name, frozen_time=frozen_time, created=created,
               deletes_after=created + DELETES_AFTER, livemode=False, status="ready", status_details={})
    return obj


def test_clock_create(emu, params):
    allow(params, {"frozen_time", "name"})
    required(params, "frozen_time")
    frozen = as_int(params["frozen_time"], "frozen_time")
    clock = test_clock_object(clock_id=shapes.new_id("clock_"), name=params.get("name") or None,
                              frozen_time=frozen, created=emu.now())
    emu.store.put(clock)
    with emu.at(frozen):
        emu.emit("test_helpers.test_clock.created", clock)
    return clock


def test_clock_retrieve(emu, params, id):
    return emu.store.get("test_helpers.test_clock", id)


def test_clock_list(emu, params):
    items = emu.store.newest_first("test_helpers.test_clock")
    return emu.store.page(created_filter(items, params.get("created")), params, "/v1/test_helpers/test_clocks")


def advance_clock(emu, clock: dict, frozen_time: int) -> dict:
    """Move `clock` to `frozen_time`, running its objects' renewals, retries, trial ends... in time order.
    Returns the answer Stripe gives to the advance call (the clock while it is `advancing`)."""
    if frozen_time <= clock["frozen_time"]:
        raise StripeError(400, "The frozen time must be after the current frozen time of the test clock.",
                          param="frozen_time")
    if frozen_time - clock["frozen_time"] > MAX_ADVANCE_SECONDS:
        raise StripeError(400, "Cannot advance the test clock more than two intervals ahead of its current "
                               "frozen time.", param="frozen_time")
    clock.update(status="advancing", status_details={"advancing": {"target_frozen_time": frozen_time}})
    answer = dict(clock, status_details=dict(clock["status_details"]))
    with emu.at(clock["frozen_time"]):
        emu.emit("test_helpers.test_clock.advancing", clock)
    emu.run_due(frozen_time, clock=clock["id"])
    clock.update(frozen_time=frozen_time, status="ready", status_details={})
    with emu.at(frozen_time):
        emu.emit("test_helpers.test_clock.ready", clock)
    return answer


def test_clock_advance(emu, params, id):
    allow(params, {"frozen_time"})
    required(params, "frozen_time")
    clock = emu.store.get("test_helpers.test_clock", id)
    return advance_clock(emu, clock, as_int(params["frozen_time"], "frozen_time"))


def test_clock_delete(emu, params, id):
    clock = emu.store.get("test_helpers.test_clock", id)
    # Stripe deletes every object on the clock with it, without events for them; a deleted customer
    # still answers its `deleted: true` stub.
    doomed = [oid for kind in ("subscription_schedule", "subscription", "invoice", "invoiceitem", "customer")
              for oid in list(emu.store.ids.get(kind, [])) if clock_of(emu, oid) == id]
    for oid in doomed:
        if emu.store.objects[oid]["object"] == "customer":
            emu.store.objects[oid] = {"id": oid, "object": "customer", "deleted": True}
        else:
            emu.store.remove(oid)
    emu.store.remove(id)
    with emu.at(clock["frozen_time"]):
        emu.emit("test_helpers.test_clock.deleted", clock)
    return {"id": id, "object": "test_helpers.test_clock", "deleted": True}


def register(api):
    api.add("POST", "/v1/test_helpers/test_clocks", test_clock_create)
    api.add("GET", "/v1/test_helpers/test_clocks", test_clock_list)
    api.add("GET", "/v1/test_helpers/test_clocks/{id}", test_clock_retrieve)
    api.add("DELETE", "/v1/test_helpers/test_clocks/{id}", test_clock_delete)
    api.add("POST", "/v1/test_helpers/test_clocks/{id}/advance", test_clock_advance)


def customer_clock(emu, params) -> str | None:
    """Validate a customer create's `test_clock` parameter; the clock id or None."""
    clock_id = params.get("test_clock") or None
    if clock_id and (clock_id not in emu.store.objects
                     or emu.store.objects[clock_id].get("object") != "test_helpers.test_clock"):
        raise missing("test_helpers.test_clock", clock_id, "test_clock")
    return clock_id
