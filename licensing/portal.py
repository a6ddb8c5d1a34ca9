"""The desktop app's way into the billing portal: `POST /api/billing/portal` with `Authorization: Bearer
<device access token>`. Registered with the core's portal authenticators in apps.py (the core never imports
licensing)."""
from __future__ import annotations

import logging

from billing_console.manage_links import ManageLinkInvalid
from licensing.selectors import device_token_customer
from licensing.tokens import TokenInvalid

log = logging.getLogger("licensing")


def portal_device_token(request, data: dict):
    header = request.headers.get("Authorization", "")
    if not header:
        return None
    scheme, _, token = header.partition(" ")
    if scheme.lower() != "bearer" or not token.strip():
        raise ManageLinkInvalid("not a bearer token")
    try:
        return device_token_customer(token.strip())
    except TokenInvalid as exc:
        log.info("portal device token rejected: %s", exc.reason,
                 extra={"event": "portal_device_token_rejected", "reason": exc.reason})
        raise ManageLinkInvalid(exc.reason) from None
