"""Billing portal sessions (the hosted portal page lives in pages.py)."""
from __future__ import annotations

from .. import shapes
from ..errors import StripeError, allow


def portal_session_create(emu, params):
    allow(params, {"customer", "return_url", "configuration", "flow_data", "locale", "on_behalf_of"})
    if not params.get("customer"):
        raise StripeError(400, "Missing required param: customer.", code="parameter_missing", param="customer")
    customer = emu.store.get("customer", params["customer"], "customer")
    session_id = shapes.new_id("bps_")
    session = shapes.portal_session(session_id=session_id, created=emu.now(), customer_id=customer["id"],
                                    return_url=params.get("return_url"),
                                    url=f"{emu.base_url}/portal/{session_id}")
    return emu.store.put(session)


def register(api):
    api.add("POST", "/v1/billing_portal/sessions", portal_session_create)
