"""A tiny threaded HTTP server base shared by the stand-ins (stdlib only)."""
from __future__ import annotations

import json
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs, urlsplit


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    allow_reuse_address = True
    # A burst of concurrent clients (benchmarks) must not be refused by a short backlog.
    request_queue_size = 256


class Request:
    """What a route handler receives: method, path, query, headers and the raw body."""

    def __init__(self, handler: BaseHTTPRequestHandler, body: bytes):
        parts = urlsplit(handler.path)
        self.method = handler.command
        self.path = parts.path
        self.query = {k: v if len(v) > 1 else v[0] for k, v in parse_qs(parts.query, keep_blank_values=True).items()}
        self.headers = handler.headers
        self.body = body

    def json(self):
        return json.loads(self.body or b"null")

    def form(self) -> dict:
        return {k: v if len(v) > 1 else v[0] for k, v in parse_qs(self.body.decode(), keep_blank_values=True).items()}


class Response:
    def __init__(self, status: int = 200, body: bytes | str | dict | list = b"", headers: dict | None = None,
                 content_type: str | None = None):
        self.headers = dict(headers or {})
        if isinstance(body, (dict, list)):
            body = json.dumps(body).encode()
            content_type = content_type or "application/json"
        elif isinstance(body, str):
            body = body.encode()
            content_type = content_type or "text/html; charset=utf-8"
        self.status = status
        self.body = body
        self.headers.setdefault("Content-Type", content_type or "application/octet-stream")


class StandIn:
    """Base for a stand-in server: subclass and implement `handle(request) -> Response`.

    `start()` binds (port 0 picks a free port), serves in a daemon thread and returns self;
    `url` is the base URL; `stop()` shuts it down. Usable as a context manager.
    """

    name = "stand-in"

    def __init__(self, host: str = "127.0.0.1", port: int = 0):
        self.host = host
        self.port = port
        self._server: _Server | None = None
        self._thread: threading.Thread | None = None
        self.lock = threading.RLock()

    # -- lifecycle -------------------------------------------------------------------------
    def start(self) -> "StandIn":
        stand_in = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"
            # Headers and body go out in separate writes; with Nagle on, keep-alive clients wait
            # ~40 ms for a delayed ACK on every response.
            disable_nagle_algorithm = True

            def _dispatch(self):
                length = int(self.headers.get("Content-Length") or 0)
                body = self.rfile.read(length) if length else b""
                try:
                    response = stand_in.handle(Request(self, body))
                except Exception as exc:  # a bug in a stand-in must show, not hang the client
                    response = Response(500, {"error": {"type": "api_error", "message": f"stand-in crashed: {exc!r}"}})
                if response is None:  # the handler chose to drop the connection (simulated timeout)
                    self.close_connection = True
                    return
                self.send_response(response.status)
                for key, value in response.headers.items():
                    self.send_header(key, value)
                self.send_header("Content-Length", str(len(response.body)))
                self.end_headers()
                if self.command != "HEAD":
                    self.wfile.write(response.body)

            do_GET = do_POST = do_PUT = do_DELETE = do_PATCH = do_HEAD = _dispatch

            def log_message(self, format, *args):  # quiet by default
                pass

        self._server = _Server((self.host, self.port), Handler)
        self.port = self._server.server_address[1]
        # A short poll interval so stop() returns in milliseconds, not the default half second.
        self._thread = threading.Thread(target=self._server.serve_forever, args=(0.05,), name=self.name, daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        if self._server:
            self._server.shutdown()
            self._server.server_close()
            self._server = None

    def serve_forever(self) -> None:
        self.start()
        try:
            self._thread.join()
        except KeyboardInterrupt:
            self.stop()

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}"

    def __enter__(self):
        return self.start()

    def __exit__(self, *exc):
        self.stop()

    def handle(self, request: Request) -> Response:  # pragma: no cover - abstract
        raise NotImplementedError
