"""gunicorn's access log with manage links redacted: the request line, path and referer of a customer's
page carry its token. Used as `--logger-class billing_console.ops.access_log.RedactingGunicornLogger`."""
from __future__ import annotations

from gunicorn.glogging import Logger

from billing_console.ops.logging import redact


class RedactingGunicornLogger(Logger):
    def atoms(self, resp, req, environ, request_time):
        return {key: redact(value) if isinstance(value, str) else value
                for key, value in super().atoms(resp, req, environ, request_time).items()}
