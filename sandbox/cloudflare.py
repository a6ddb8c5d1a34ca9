"""A fake Cloudflare v4 API: token verify, Worker script listing and module upload, with injectable failures.

Tokens are bound to one account with permission scopes, as Cloudflare's are: listing an account's Worker
scripts (GET /accounts/<id>/workers/scripts) needs Workers Scripts Read or Edit on that account, an upload
needs Edit; a valid token without it answers 403 code 10000, as Cloudflare does for a token that has no
access to the account named.

Answers use Cloudflare's envelope `{"success", "errors": [{"code", "message"}], "messages", "result"}`
and the error codes Cloudflare sends, so the console's client classifies them as it would in production:

  401, code 1000   unknown, revoked or expired token ("Invalid API Token")
  403, code 10000  token without Workers Scripts:Edit, or for another account ("Authentication error")
  403, code 10014  account suspended (our pick: Cloudflare has no public code for it; 100xx are Workers API errors)
  429, code 971    rate limited, with Retry-After
  500, code 10013  "An unknown error has occurred" (Workers API)
  502/503/504      an HTML page, as Cloudflare's edge answers, not JSON
  400, code 10021  upload rejected: metadata missing or invalid, main module missing

Control: `add_token`, `set_token_status`, `suspend_account`, `faults`, `uploads`, `reset` in Python,
or over HTTP under `/_sandbox/` (see `_control`).
"""
from __future__ import annotations

import hashlib
import json
import re
import time
import uuid
from dataclasses import asdict, dataclass, field
from datetime import datetime, timezone

from ._faults import DROP, Faults
from ._http import Request, Response, StandIn

WORKERS_SCRIPTS_EDIT = "workers_scripts:edit"
WORKERS_SCRIPTS_READ = "workers_scripts:read"

CODE_INVALID_TOKEN = 1000
CODE_AUTH_ERROR = 10000
CODE_ACCOUNT_SUSPENDED = 10014
CODE_RATE_LIMITED = 971
CODE_UNKNOWN = 10013
CODE_SCRIPT_INVALID = 10021

_VERIFY_USER = re.compile(r"^/client/v4/user/tokens/verify$")
_VERIFY_ACCOUNT = re.compile(r"^/client/v4/accounts/(?P<account>[^/]+)/tokens/verify$")
_SCRIPTS = re.compile(r"^/client/v4/accounts/(?P<account>[^/]+)/workers/scripts$")
_SCRIPT = re.compile(r"^/client/v4/accounts/(?P<account>[^/]+)/workers/scripts/(?P<script>[A-Za-z0-9_-]+)$")

_EDGE_PAGES = {502: "Bad gateway", 503: "Service unavailable", 504: "Gateway time-out"}


@dataclass
class Token:
    token: str
    account_id: str
    scopes: tuple[str, ...]
    status: str  # active, expired, revoked
    id: str = field(default_factory=lambda: uuid.uuid4().hex)


@dataclass(frozen=True)
class Upload:
    account_id: str
    script_name: str
    sha256: str
    size: int
    main_module: str
    compatibility_date: str
    token_id: str
    token: str
    uploaded_at: float  # epoch seconds

    def as_dict(self) -> dict:
        data = asdict(self)
        data["uploaded_at"] = _iso(self.uploaded_at)
        return data


def _iso(ts: float) -> str:
    return datetime.fromtimestamp(ts, timezone.utc).isoformat().replace("+00:00", "Z")


def envelope(status: int, result=None, errors: list[tuple[int, str]] = (), messages: list[dict] = (),
             headers: dict | None = None) -> Response:
    return Response(status, {
        "success": not errors,
        "errors": [{"code": code, "message": message} for code, message in errors],
        "messages": list(messages),
        "result": result,
    }, headers=headers)


def parse_multipart(content_type: str, body: bytes) -> list[dict] | None:
    """Parts of a multipart/form-data body as dicts (name, filename, content_type, data), or None if
    it is not one. Hand-rolled: the email package's parser costs ~3 ms per upload, too slow for the
    push benchmark."""
    match = re.match(r'multipart/form-data\s*;.*boundary=(?:"([^"]+)"|([^\s;]+))', content_type, re.I | re.S)
    if not match:
        return None
    delimiter = b"--" + (match[1] or match[2]).encode("latin-1")
    sections = body.split(delimiter)
    if len(sections) < 3 or not sections[-1].startswith(b"--"):
        return None  # no parts, or no closing delimiter
    parts = []
    for section in sections[1:-1]:
        head, separator, data = section.removeprefix(b"\r\n").partition(b"\r\n\r\n")
        if not separator:
            return None
        headers = {}
        for line in head.decode("utf-8", "replace").split("\r\n"):
            key, _, value = line.partition(":")
            headers[key.strip().lower()] = value.strip()
        disposition = headers.get("content-disposition", "")
        name = re.search(r'(?:^|;)\s*name="([^"]*)"', disposition)
        filename = re.search(r'(?:^|;)\s*filename="([^"]*)"', disposition)
        parts.append({
            "name": name[1] if name else None,
            "filename": filename[1] if filename else None,
            "content_type": headers.get("content-type", "text/plain").split(";")[0].strip().lower(),
            "data": data.removesuffix(b"\r\n"),
        })
    return parts


class FakeCloudflare(StandIn):
    name = "fake-cloudflare"

    def __init__(self, host: str = "127.0.0.1", port: int = 0):
        super().__init__(host, port)
        self.faults = Faults()
        self.reset()

    # -- control (Python) -------------------------------------------------------------------
    def reset(self) -> None:
        with self.lock:
            self._tokens: dict[str, Token] = {}
            self._suspended: set[str] = set()
            self._uploads: list[Upload] = []
            self._created: dict[tuple[str, str], float] = {}
            self._listings: list[tuple[str, str]] = []
            self._in_flight = 0
            self.max_in_flight = 0  # the most API calls served at once: a push must stay within its concurrency
        self.faults.clear()

    def add_token(self, token: str, account_id: str, scopes=(WORKERS_SCRIPTS_EDIT,), status: str = "active") -> Token:
        if status not in ("active", "expired", "revoked"):
            raise ValueError(f"unknown token status {status!r}")
        entry = Token(token, account_id, tuple(scopes), status)
        with self.lock:
            self._tokens[token] = entry
        return entry

    def set_token_status(self, token: str, status: str) -> None:
        if status not in ("active", "expired", "revoked"):
            raise ValueError(f"unknown token status {status!r}")
        with self.lock:
            self._tokens[token].status = status

    def suspend_account(self, account_id: str, suspended: bool = True) -> None:
        with self.lock:
            (self._suspended.add if suspended else self._suspended.discard)(account_id)

    def set_latency(self, seconds: float) -> None:
        self.faults.latency = float(seconds)

    def fail_next(self, status: int | str, count: int = 1, account_id: str | None = None,
                  retry_after: int | None = None, delay: float = 0.0) -> None:
        """The next `count` API calls (for `account_id` only, if given) answer `status`, or drop (DROP)."""
        self.faults.add(status, count=count, scope=account_id, retry_after=retry_after, delay=delay)

    @property
    def uploads(self) -> list[Upload]:
        with self.lock:
            return list(self._uploads)

    @property
    def script_listings(self) -> list[tuple[str, str]]:
        """(account id, token) of every successful GET /accounts/<id>/workers/scripts."""
        with self.lock:
            return list(self._listings)

    def uploads_for(self, account_id: str, script_name: str) -> list[Upload]:
        return [u for u in self.uploads if u.account_id == account_id and u.script_name == script_name]

    # -- HTTP ---------------------------------------------------------------------------------
    def handle(self, request: Request) -> Response | None:
        if request.path.startswith("/_sandbox/"):
            return self._control(request)
        with self.lock:
            self._in_flight += 1
            self.max_in_flight = max(self.max_in_flight, self._in_flight)
        try:
            return self._handle_api(request)
        finally:
            with self.lock:
                self._in_flight -= 1

    def _handle_api(self, request: Request) -> Response | None:
        if self.faults.latency:
            time.sleep(self.faults.latency)
        token = self._bearer(request)
        match = _SCRIPT.match(request.path) or _SCRIPTS.match(request.path) or _VERIFY_ACCOUNT.match(request.path)
        account_id = match["account"] if match else (token.account_id if token else None)
        fault = self.faults.take({account_id})
        if fault:
            return self._fault_response(fault)

        if _VERIFY_USER.match(request.path) or _VERIFY_ACCOUNT.match(request.path):
            if request.method != "GET":
                return envelope(405, errors=[(10405, "Method not allowed for this route")])
            return self._verify(request, token, account_id if _VERIFY_ACCOUNT.match(request.path) else None)
        if _SCRIPTS.match(request.path):
            if request.method != "GET":
                return envelope(405, errors=[(10405, "Method not allowed for this route")])
            return self._list_scripts(request, token, match["account"])
        if _SCRIPT.match(request.path):
            if request.method != "PUT":
                return envelope(405, errors=[(10405, "Method not allowed for this route")])
            return self._upload(request, token, match["account"], match["script"])
        return envelope(404, errors=[
            (7003, f"Could not route to {request.path}, perhaps your object identifier is invalid?")])

    def _bearer(self, request: Request) -> Token | None:
        auth = request.headers.get("Authorization") or ""
        if not auth.startswith("Bearer "):
            return None
        with self.lock:
            return self._tokens.get(auth[len("Bearer "):].strip())

    def _auth_failure(self, request: Request, token: Token | None) -> Response | None:
        if not request.headers.get("Authorization"):
            return envelope(400, errors=[(9106, "Missing X-Auth-Key, X-Auth-Email or Authorization headers")])
        if token is None or token.status != "active":
            return envelope(401, errors=[(CODE_INVALID_TOKEN, "Invalid API Token")])
        return None

    def _verify(self, request: Request, token: Token | None, account_id: str | None) -> Response:
        failure = self._auth_failure(request, token)
        if failure:
            return failure
        if account_id is not None and token.account_id != account_id:
            return envelope(401, errors=[(CODE_INVALID_TOKEN, "Invalid API Token")])
        return envelope(200, {"id": token.id, "status": "active"},
                        messages=[{"code": 10000, "message": "This API Token is valid and active", "type": None}])

    def _list_scripts(self, request: Request, token: Token | None, account_id: str) -> Response:
        failure = self._auth_failure(request, token)
        if failure:
            return failure
        if token.account_id != account_id or not {WORKERS_SCRIPTS_READ, WORKERS_SCRIPTS_EDIT} & set(token.scopes):
            return envelope(403, errors=[(CODE_AUTH_ERROR, "Authentication error")])
        with self.lock:
            if account_id in self._suspended:
                return envelope(403, errors=[
                    (CODE_ACCOUNT_SUSPENDED, "This account has been suspended. Contact Cloudflare support.")])
            self._listings.append((account_id, token.token))
            latest = {u.script_name: u for u in self._uploads if u.account_id == account_id}
            scripts = [{"id": name, "etag": u.sha256, "handlers": ["fetch"], "usage_model": "standard",
                        "created_on": _iso(self._created[(account_id, name)]), "modified_on": _iso(u.uploaded_at)}
                       for name, u in sorted(latest.items())]
        return envelope(200, scripts)

    def _upload(self, request: Request, token: Token | None, account_id: str, script_name: str) -> Response:
        failure = self._auth_failure(request, token)
        if failure:
            return failure
        if token.account_id != account_id or WORKERS_SCRIPTS_EDIT not in token.scopes:
            return envelope(403, errors=[(CODE_AUTH_ERROR, "Authentication error")])
        with self.lock:
            suspended = account_id in self._suspended
        if suspended:
            return envelope(403, errors=[
                (CODE_ACCOUNT_SUSPENDED, "This account has been suspended. Contact Cloudflare support.")])

        parts = parse_multipart(request.headers.get("Content-Type") or "", request.body)
        if parts is None:
            return envelope(400, errors=[
                (CODE_SCRIPT_INVALID, "Expected a multipart/form-data body with a metadata part")])
        by_name = {p["name"]: p for p in parts}
        if "metadata" not in by_name:
            return envelope(400, errors=[(CODE_SCRIPT_INVALID, "Missing metadata part in the multipart upload")])
        try:
            metadata = json.loads(by_name["metadata"]["data"])
        except ValueError:
            return envelope(400, errors=[(CODE_SCRIPT_INVALID, "metadata part is not valid JSON")])
        if not isinstance(metadata, dict) or not metadata.get("main_module"):
            return envelope(400, errors=[(CODE_SCRIPT_INVALID, "metadata.main_module is required for a module Worker")])
        main_module = metadata["main_module"]
        module = by_name.get(main_module) or next((p for p in parts if p["filename"] == main_module), None)
        if module is None:
            return envelope(400, errors=[(CODE_SCRIPT_INVALID, f'Uncaught Error: No such module "{main_module}".')])
        if module["content_type"] != "application/javascript+module":
            return envelope(400, errors=[(CODE_SCRIPT_INVALID,
                                          f'Module "{main_module}" must be sent as application/javascript+module')])
        compatibility_date = metadata.get("compatibility_date") or ""
        if compatibility_date and not re.fullmatch(r"\d{4}-\d{2}-\d{2}", compatibility_date):
            return envelope(400, errors=[(CODE_SCRIPT_INVALID, f"Invalid compatibility_date {compatibility_date!r}")])

        now = time.time()
        upload = Upload(account_id, script_name, hashlib.sha256(module["data"]).hexdigest(), len(module["data"]),
                        main_module, compatibility_date, token.id, token.token, now)
        with self.lock:
            self._uploads.append(upload)
            created = self._created.setdefault((account_id, script_name), now)
        return envelope(200, {
            "id": script_name, "etag": upload.sha256, "size": upload.size, "handlers": ["fetch"],
            "compatibility_date": compatibility_date, "usage_model": "standard",
            "created_on": _iso(created), "modified_on": _iso(now),
        })

    def _fault_response(self, fault) -> Response | None:
        if fault.delay:
            time.sleep(fault.delay)
        if fault.status == DROP:
            return None
        status = fault.status
        headers = {"Retry-After": str(fault.retry_after or 1)} if status in (429, 503) else {}
        if status in _EDGE_PAGES:
            title = f"{status}: {_EDGE_PAGES[status]}"
            return Response(status, f"<html><head><title>{title}</title></head><body><h1>{title}</h1></body></html>",
                            headers=headers)
        code, message = {
            401: (CODE_INVALID_TOKEN, "Invalid API Token"),
            403: (CODE_AUTH_ERROR, "Authentication error"),
            429: (CODE_RATE_LIMITED, "Please wait and consider throttling your request speed"),
        }.get(status, (CODE_UNKNOWN, "An unknown error has occurred"))
        return envelope(status, errors=[(code, message)], headers=headers)

    # -- control (HTTP) -----------------------------------------------------------------------
    def _control(self, request: Request) -> Response:
        """GET /_sandbox/uploads[?account_id=&script_name=]; GET|POST /_sandbox/faults (see Faults.apply_json);
        POST /_sandbox/tokens {token, account_id, scopes?, status?}; POST /_sandbox/tokens/status {token, status};
        POST /_sandbox/accounts/<id>/suspend {suspended?: bool}; POST /_sandbox/reset."""
        path, method = request.path, request.method
        try:
            if path == "/_sandbox/uploads" and method == "GET":
                uploads = [u.as_dict() for u in self.uploads
                           if request.query.get("account_id") in (None, u.account_id)
                           and request.query.get("script_name") in (None, u.script_name)]
                return Response(200, {"uploads": uploads})
            if path == "/_sandbox/faults" and method == "GET":
                return Response(200, {"latency": self.faults.latency, "faults": self.faults.pending()})
            if path == "/_sandbox/faults" and method == "POST":
                self.faults.apply_json(request.json(), scope_key="account_id")
                return Response(200, {"latency": self.faults.latency, "faults": self.faults.pending()})
            if path == "/_sandbox/tokens" and method == "POST":
                data = request.json()
                token = self.add_token(data["token"], data["account_id"],
                                       tuple(data.get("scopes", (WORKERS_SCRIPTS_EDIT,))), data.get("status", "active"))
                return Response(201, {"id": token.id, "account_id": token.account_id, "status": token.status})
            if path == "/_sandbox/tokens/status" and method == "POST":
                data = request.json()
                self.set_token_status(data["token"], data["status"])
                return Response(200, {"status": data["status"]})
            match = re.fullmatch(r"/_sandbox/accounts/([^/]+)/suspend", path)
            if match and method == "POST":
                suspended = bool((request.json() or {}).get("suspended", True))
                self.suspend_account(match[1], suspended)
                return Response(200, {"account_id": match[1], "suspended": suspended})
            if path == "/_sandbox/reset" and method == "POST":
                self.reset()
                return Response(200, {"reset": True})
        except (KeyError, TypeError, ValueError) as exc:
            return Response(400, {"error": f"bad control request: {exc!r}"})
        return Response(404, {"error": f"no control endpoint {method} {path}"})
