"""The Cloudflare API client: verify a token on an account, list and upload Worker module scripts.

Every failure becomes a `CloudflareError` with one of the console's error codes, so the push, the
admin and the customer page all speak the same words. The token travels only in the Authorization
header; it is never put into an error message or a log line.
"""
from __future__ import annotations

import functools
import http.client
import json
import logging
import secrets
import ssl
import threading
from dataclasses import dataclass, field
from urllib.parse import urlsplit

from django.conf import settings

from deployments.models import ErrorCode

log = logging.getLogger("deployments.cloudflare")

# Cloudflare answers a suspended account with a 403 too; these codes and words tell it from a scope problem.
_SUSPENDED_CODES = {10014}
_SUSPENDED_WORDS = ("suspended", "account is disabled", "account has been disabled")

MESSAGES = {
    ErrorCode.TOKEN_INVALID: "Cloudflare rejected the API token: it is expired, revoked or mistyped. Paste a fresh token.",
    ErrorCode.TOKEN_SCOPE: "The API token is valid but lacks Workers Scripts:Edit on this account. Fix its permissions or paste another.",
    ErrorCode.ACCOUNT_SUSPENDED: "Cloudflare has suspended this account; pushes resume once Cloudflare lifts it.",
    ErrorCode.RATE_LIMITED: "Cloudflare asked us to slow down; the push will be retried.",
    ErrorCode.UPSTREAM_ERROR: "Cloudflare answered with an error; the push will be retried.",
    ErrorCode.NETWORK: "Cloudflare could not be reached; the push will be retried.",
    ErrorCode.REQUEST_REJECTED: "Cloudflare rejected the upload.",
}


@functools.cache
def ssl_context() -> ssl.SSLContext:
    """Built once per process: loading the CA bundle costs ~0.2 s, too much for every client."""
    import certifi

    return ssl.create_default_context(cafile=certifi.where())


class CloudflareError(Exception):
    def __init__(self, code: str, message: str, *, status: int | None = None, retry_after: int | None = None):
        super().__init__(message)
        self.code = code
        self.message = message
        self.status = status
        self.retry_after = retry_after

    @property
    def is_auth(self) -> bool:
        return self.code in (ErrorCode.TOKEN_INVALID, ErrorCode.TOKEN_SCOPE)


@dataclass(frozen=True)
class UploadResult:
    script_name: str
    etag: str
    modified_on: str


class Answer:
    """The parts of an HTTP answer the error mapping reads (status_code, headers, json()), like httpx's."""

    def __init__(self, status_code: int, headers, content: bytes):
        self.status_code, self.headers, self.content = status_code, headers, content

    def json(self):
        return json.loads(self.content)


def _retry_after(response: Answer) -> int | None:
    value = response.headers.get("Retry-After", "").strip()
    if value.isdigit():
        return int(value)
    return None


def _cf_errors(response: Answer) -> list[dict]:
    try:
        body = response.json()
    except ValueError:
        return []
    errors = body.get("errors") if isinstance(body, dict) else None
    return [e for e in errors if isinstance(e, dict)] if isinstance(errors, list) else []


def classify(response: Answer) -> CloudflareError:
    """Map a non-success answer to an error code and a message safe to show."""
    status = response.status_code
    errors = _cf_errors(response)
    detail = "; ".join(f"{e.get('code')}: {str(e.get('message', ''))[:200]}" for e in errors)[:500]
    suffix = f" (Cloudflare {status}{': ' + detail if detail else ''})"
    if status == 401:
        code = ErrorCode.TOKEN_INVALID
    elif status == 403:
        suspended = any(e.get("code") in _SUSPENDED_CODES for e in errors) or any(
            w in str(e.get("message", "")).lower() for e in errors for w in _SUSPENDED_WORDS)
        code = ErrorCode.ACCOUNT_SUSPENDED if suspended else ErrorCode.TOKEN_SCOPE
    elif status == 429:
        retry_after = _retry_after(response)
        wait = f" Retry after {retry_after} s." if retry_after is not None else ""
        return CloudflareError(ErrorCode.RATE_LIMITED, MESSAGES[ErrorCode.RATE_LIMITED] + wait + suffix,
                               status=status, retry_after=retry_after)
    elif status >= 500 or 200 <= status < 300:  # a 2xx with success=false is Cloudflare misbehaving too
        code = ErrorCode.UPSTREAM_ERROR
    else:
        code = ErrorCode.REQUEST_REJECTED
    return CloudflareError(code, MESSAGES[code] + suffix, status=status, retry_after=_retry_after(response))


@dataclass(frozen=True)
class PreparedUpload:
    content_type: str
    body: bytes = field(repr=False)


def prepare_upload(module: bytes, *, module_name: str = "worker.mjs", compatibility_date: str | None = None) -> PreparedUpload:
    """The multipart body Cloudflare expects for a module Worker: a `metadata` JSON part naming the main module,
    and the module itself as application/javascript+module. Encoded once per release and reused for every
    deployment (the bytes are the same; encoding per request costs more CPU than the request itself)."""
    metadata = json.dumps({"main_module": module_name,
                           "compatibility_date": compatibility_date or settings.DEPLOY_COMPATIBILITY_DATE}).encode()
    boundary = secrets.token_hex(16)
    while boundary.encode() in module:  # pragma: no cover - 128 random bits
        boundary = secrets.token_hex(16)
    body = b"".join([
        f"--{boundary}\r\n".encode(),
        b'Content-Disposition: form-data; name="metadata"\r\nContent-Type: application/json\r\n\r\n',
        metadata,
        f"\r\n--{boundary}\r\n".encode(),
        f'Content-Disposition: form-data; name="{module_name}"; filename="{module_name}"\r\n'.encode(),
        b"Content-Type: application/javascript+module\r\n\r\n",
        module,
        f"\r\n--{boundary}--\r\n".encode(),
    ])
    return PreparedUpload(content_type=f"multipart/form-data; boundary={boundary}", body=body)


class CloudflareClient:
    """Thread-safe: each thread keeps one keep-alive connection (http.client: the push sends thousands of
    requests from a thread pool, and httpx's per-request machinery cost more CPU than the upload itself).
    Use as a context manager or call close()."""

    def __init__(self, *, base_url: str | None = None, timeout: float | None = None, max_connections: int = 10):
        self.base_url = (base_url or settings.CLOUDFLARE_API_BASE).rstrip("/")
        parts = urlsplit(self.base_url)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise ValueError("CLOUDFLARE_API_BASE must be an http(s) URL.")
        self._https, self._host, self._port, self._prefix = (parts.scheme == "https", parts.hostname, parts.port,
                                                             parts.path)
        self.timeout = settings.CLOUDFLARE_TIMEOUT_SECONDS if timeout is None else timeout
        self._local = threading.local()
        # One connection per calling thread, so `max_connections` is the caller's thread count (kept as a
        # parameter for the callers that size their pool with it).
        self._opened: list[http.client.HTTPConnection] = []
        self._lock = threading.Lock()

    def close(self) -> None:
        with self._lock:
            for conn in self._opened:
                conn.close()
            self._opened.clear()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

    def _connection(self) -> http.client.HTTPConnection:
        conn = getattr(self._local, "conn", None)
        if conn is None:
            if self._https:
                conn = http.client.HTTPSConnection(self._host, self._port, timeout=self.timeout, context=ssl_context())
            else:
                conn = http.client.HTTPConnection(self._host, self._port, timeout=self.timeout)
            self._local.conn = conn
            with self._lock:
                self._opened.append(conn)
        return conn

    def _drop(self) -> None:
        """Forget this thread's connection after an error: its state is unknown."""
        conn = getattr(self._local, "conn", None)
        if conn is not None:
            conn.close()
            self._local.conn = None
            with self._lock:
                if conn in self._opened:
                    self._opened.remove(conn)

    def _send(self, method: str, path: str, headers: dict, body: bytes | None) -> Answer:
        conn = self._connection()
        reused = conn.sock is not None
        try:
            conn.request(method, self._prefix + path, body=body, headers=headers)
            response = conn.getresponse()
        except (http.client.RemoteDisconnected, ConnectionResetError, BrokenPipeError):
            if not reused:
                raise
            # The server closed an idle keep-alive connection: one retry on a new one (GET and PUT are idempotent).
            self._drop()
            conn = self._connection()
            conn.request(method, self._prefix + path, body=body, headers=headers)
            response = conn.getresponse()
        content = response.read()
        if response.will_close:
            self._drop()
        return Answer(response.status, response.headers, content)

    def _request(self, method: str, path: str, token: str, headers: dict | None = None, content: bytes | None = None) -> dict:
        headers = {"User-Agent": "billing-console/1", **(headers or {}), "Authorization": f"Bearer {token}"}
        try:
            response = self._send(method, path, headers, content)
        except TimeoutError as exc:
            self._drop()
            raise CloudflareError(ErrorCode.NETWORK, MESSAGES[ErrorCode.NETWORK] + f" (timed out: {type(exc).__name__})") from None
        except (OSError, http.client.HTTPException) as exc:
            self._drop()
            raise CloudflareError(ErrorCode.NETWORK, MESSAGES[ErrorCode.NETWORK] + f" ({type(exc).__name__})") from None
        if response.status_code >= 400:
            raise classify(response)
        try:
            body = response.json()
        except ValueError:
            raise CloudflareError(ErrorCode.UPSTREAM_ERROR, MESSAGES[ErrorCode.UPSTREAM_ERROR] + " (answer was not JSON)",
                                  status=response.status_code) from None
        if not isinstance(body, dict) or not body.get("success"):
            raise classify(response)
        return body

    def verify_token(self, *, account_id: str, token: str) -> None:
        """Raises CloudflareError unless the token is active AND works on this account. User tokens verify at
        /user/tokens/verify; account-owned tokens only at /accounts/<id>/tokens/verify, so a 401 there is
        retried on the latter. Verify alone proves nothing about the account id (any valid token passes), so one
        authorised call on the account follows: listing its Worker scripts, which Cloudflare answers with 403
        for a token that has no Workers permission there (token_scope). Cloudflare lets no token read its
        own permission groups, so Read and Edit cannot be told apart without a write: a read-only token is
        caught by the first push, as token_scope."""
        try:
            body = self._request("GET", "/user/tokens/verify", token)
        except CloudflareError as exc:
            if exc.code != ErrorCode.TOKEN_INVALID:
                raise
            body = self._request("GET", f"/accounts/{account_id}/tokens/verify", token)
        status = (body.get("result") or {}).get("status")
        if status != "active":
            raise CloudflareError(ErrorCode.TOKEN_INVALID, MESSAGES[ErrorCode.TOKEN_INVALID] + f" (token status {status!r})")
        self.list_scripts(account_id=account_id, token=token)

    def list_scripts(self, *, account_id: str, token: str) -> list[str]:
        """GET /accounts/<id>/workers/scripts: the names of the account's Worker scripts."""
        body = self._request("GET", f"/accounts/{account_id}/workers/scripts", token)
        result = body.get("result")
        return [s.get("id", "") for s in result if isinstance(s, dict)] if isinstance(result, list) else []

    def upload_script(self, *, account_id: str, script_name: str, token: str, upload: "PreparedUpload") -> UploadResult:
        """PUT /accounts/<id>/workers/scripts/<name> with a body from `prepare_upload`."""
        body = self._request("PUT", f"/accounts/{account_id}/workers/scripts/{script_name}", token,
                             content=upload.body, headers={"Content-Type": upload.content_type})
        result = body.get("result") or {}
        return UploadResult(script_name=result.get("id", script_name), etag=result.get("etag", ""),
                            modified_on=result.get("modified_on", ""))
