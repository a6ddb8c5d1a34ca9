"""Webhook endpoints created through the API (the sandbox's own is `we_sandbox`)."""
from __future__ import annotations

from .. import shapes
from ..errors import StripeError, allow, metadata as merge_metadata
from ..eventlog import SECRETS
from ..params import as_bool, as_list


def enabled_events(emu, params) -> list[str]:
    events = [e for e in as_list(params.get("enabled_events")) if isinstance(e, str) and e]
    if not events:
        raise StripeError(400, "Missing required param: enabled_events.", code="parameter_missing",
                          param="enabled_events")
    return events


def webhook_endpoint_create(emu, params):
    allow(params, {"url", "enabled_events", "description", "metadata", "api_version", "connect"})
    if not params.get("url"):
        raise StripeError(400, "Missing required param: url.", code="parameter_missing", param="url")
    endpoint = emu.store.put(shapes.webhook_endpoint(
        endpoint_id=shapes.new_id("we_"), url=params["url"], enabled_events=enabled_events(emu, params),
        created=emu.now(), api_version=params.get("api_version") or None,
        description=params.get("description") or None, metadata=merge_metadata({}, params.get("metadata"))))
    emu.store.table(SECRETS)[endpoint["id"]] = shapes.new_id("whsec_", 32)
    # Stripe shows the signing secret only in the answer to the create call.
    return {**endpoint, "secret": emu.store.table(SECRETS)[endpoint["id"]]}


def webhook_endpoint_list(emu, params):
    return emu.store.page(emu.store.newest_first("webhook_endpoint"), params, "/v1/webhook_endpoints")


def webhook_endpoint_retrieve(emu, params, id):
    return emu.store.get("webhook_endpoint", id)


def webhook_endpoint_update(emu, params, id):
    allow(params, {"url", "enabled_events", "description", "metadata", "disabled"})
    endpoint = emu.store.get("webhook_endpoint", id)
    if params.get("url"):
        endpoint["url"] = params["url"]
    if "enabled_events" in params:
        endpoint["enabled_events"] = enabled_events(emu, params)
    if "description" in params:
        endpoint["description"] = params["description"] or None
    if "metadata" in params:
        endpoint["metadata"] = merge_metadata(endpoint["metadata"], params["metadata"])
    if "disabled" in params:
        endpoint["status"] = "disabled" if as_bool(params["disabled"], "disabled") else "enabled"
    return endpoint


def webhook_endpoint_delete(emu, params, id):
    emu.store.get("webhook_endpoint", id)
    del emu.store.objects[id]
    emu.store.ids["webhook_endpoint"].remove(id)
    emu.store.table(SECRETS).pop(id, None)
    return {"id": id, "object": "webhook_endpoint", "deleted": True}


def register(api):
    api.add("POST", "/v1/webhook_endpoints", webhook_endpoint_create)
    api.add("GET", "/v1/webhook_endpoints", webhook_endpoint_list)
    api.add("GET", "/v1/webhook_endpoints/{id}", webhook_endpoint_retrieve)
    api.add("POST", "/v1/webhook_endpoints/{id}", webhook_endpoint_update)
    api.add("DELETE", "/v1/webhook_endpoints/{id}", webhook_endpoint_delete)
