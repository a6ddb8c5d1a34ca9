"""The one error a service raises when it refuses to act.

    raise ServiceError("paused", "The deployment is paused; resume it first.")
    raise ServiceError("invalid", fields={"api_token": "Paste the token as Cloudflare shows it."})

`code` is machine-readable (APIs put it in `{"error": {"code", "message"}}`), `message` is plain and
fit to show as is to support or a customer, `fields` names the inputs at fault for a form. Apps
subclass it only to let callers catch their own refusals (LicenseError, DunningError, the
gateway's StripeGatewayError for Stripe outages); every subclass keeps `.code` and `.message`.
"""
from __future__ import annotations


class ServiceError(Exception):
    code = "refused"

    def __init__(self, code: str | None = None, message: str = "", *, fields: dict[str, str] | None = None):
        self.code = code or type(self).code
        self.fields = dict(fields or {})
        self.message = message or " ".join(self.fields.values())
        super().__init__(self.message)

    def __str__(self) -> str:
        return self.message


def error_body(code: str, message: str, **extra) -> dict:
    """Every API's error answer: `{"error": {"code", "message", ...extra}}`."""
    return {"error": {"code": code, "message": message, **extra}}


def desktop_error_body(code: str, message: str, **extra) -> dict:
    """The licence API's published answer `{"code", "error": message, ...extra}`: desktop apps in the
    field parse it (README "APIs"), so it stays as long as those versions are supported."""
    return {"code": code, "error": message, **extra}
