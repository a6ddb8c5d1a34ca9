"""The account (`GET /v1/account`)."""
from __future__ import annotations

from ..errors import StripeError


def account_retrieve(emu, params, id=None):
    if id is not None and id != emu.account["id"]:
        raise StripeError(403, f"The provided key does not have access to account '{id}' (or that "
                               "account does not exist). Application access may have been revoked.",
                          type="invalid_request_error", code="account_invalid")
    return emu.account


def register(api):
    api.add("GET", "/v1/account", account_retrieve)
    api.add("GET", "/v1/accounts/{id}", account_retrieve)
