"""The event log through the API (events are built in eventlog.py)."""
from __future__ import annotations

from ..errors import missing
from ..params import as_bool, as_list
from ..store import created_filter


def event_list(emu, params):
    items = list(reversed(emu.eventlog.events))
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
        items = [e for e in items if e["id"] in emu.eventlog.delivery
                 and all(v is True for v in emu.eventlog.delivery[e["id"]].values()) == success]
    return emu.store.page(created_filter(items, params.get("created")), params, "/v1/events")


def event_retrieve(emu, params, id):
    event = emu.eventlog.by_id.get(id)
    if event is None:
        raise missing("event", id)
    return event


def register(api):
    api.add("GET", "/v1/events", event_list)
    api.add("GET", "/v1/events/{id}", event_retrieve)
