"""A real SMTP server (aiosmtpd) that captures every message, plus a small HTTP view of the inbox.

    with MailCatcher(port=0, http_port=0) as catcher:      # EMAIL_URL = catcher.url
        ...send mail...
        mail = catcher.wait_for(lambda m: "alice@example.com" in m.to, timeout=5)
        mail.subject, mail.text, mail.html, mail.bcc, mail.attachments[0].data

HTTP view (for a browser test or a person): GET / (an HTML list of the mails, and of the WhatsApp
messages when `whatsapp_messages` is given), GET /messages[?to=addr] (JSON),
GET /messages/<id>, GET /messages/<id>/html, GET /messages/<id>/attachments/<n>, DELETE /messages.
"""
from __future__ import annotations

import email.policy
import html
import re
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime, timezone
from email.parser import BytesParser
from email.utils import getaddresses

from aiosmtpd.controller import Controller

from ._http import Request, Response, StandIn


@dataclass(frozen=True)
class Attachment:
    filename: str | None
    content_type: str
    data: bytes


@dataclass
class CapturedMail:
    id: int
    mail_from: str  # envelope sender
    recipients: list[str]  # envelope recipients: To, Cc and Bcc alike
    from_: str  # From header
    to: list[str]
    cc: list[str]
    bcc: list[str]  # envelope recipients named in no header
    subject: str
    text: str | None
    html: str | None
    attachments: list[Attachment]
    headers: dict[str, str]
    raw: bytes = field(repr=False)
    received_at: float = field(default_factory=time.time)

    def as_dict(self, attachment_url: str | None = None) -> dict:
        return {
            "id": self.id, "mail_from": self.mail_from, "recipients": self.recipients, "from": self.from_,
            "to": self.to, "cc": self.cc, "bcc": self.bcc, "subject": self.subject,
            "text": self.text, "html": self.html, "headers": self.headers,
            "attachments": [{"filename": a.filename, "content_type": a.content_type, "size": len(a.data),
                             **({"url": f"{attachment_url}/{self.id}/attachments/{n}"} if attachment_url else {})}
                            for n, a in enumerate(self.attachments)],
            "received_at": datetime.fromtimestamp(self.received_at, timezone.utc).isoformat().replace("+00:00", "Z"),
        }


def parse_mail(mail_id: int, mail_from: str, recipients: list[str], raw: bytes) -> CapturedMail:
    message = BytesParser(policy=email.policy.default).parsebytes(raw)

    def addresses(header: str) -> list[str]:
        return [addr for _, addr in getaddresses([str(v) for v in message.get_all(header, [])]) if addr]

    def body(kind: str) -> str | None:
        part = message.get_body(preferencelist=(kind,))
        if part is None or part.get_content_subtype() != kind:
            return None
        return part.get_content().replace("\r\n", "\n")  # SMTP carries CRLF; callers compare with Python text

    to, cc = addresses("To"), addresses("Cc")
    named = {a.lower() for a in to + cc}
    return CapturedMail(
        id=mail_id, mail_from=mail_from, recipients=list(recipients), from_=str(message.get("From", "")),
        to=to, cc=cc, bcc=[r for r in recipients if r.lower() not in named],
        subject=str(message.get("Subject", "")), text=body("plain"), html=body("html"),
        attachments=[Attachment(part.get_filename(), part.get_content_type(), part.get_payload(decode=True) or b"")
                     for part in message.iter_attachments()],
        headers={k: str(v) for k, v in message.items()}, raw=raw,
    )


class _Controller(Controller):
    def _trigger_server(self):
        # Port 0 binds a free port; learn it before aiosmtpd connects to itself to check it is up.
        self.port = self.server.sockets[0].getsockname()[1]
        super()._trigger_server()


class MailCatcher:
    def __init__(self, host: str = "127.0.0.1", port: int = 0, http_port: int | None = None,
                 whatsapp_messages: Callable[[], list[dict]] | None = None):
        self.host, self.port, self.http_port = host, port, http_port
        # WhatsApp messages shown beside the mails on the inbox page ({number, text, sent_at} dicts).
        self.whatsapp_messages = whatsapp_messages
        self._messages: list[CapturedMail] = []
        self._next_id = 1
        self._changed = threading.Condition()
        self._controller: _Controller | None = None
        self.http: MailCatcherHTTP | None = None

    async def handle_DATA(self, server, session, envelope):  # aiosmtpd handler hook
        with self._changed:
            mail = parse_mail(self._next_id, envelope.mail_from, list(envelope.rcpt_tos), envelope.original_content
                              or envelope.content)
            self._next_id += 1
            self._messages.append(mail)
            self._changed.notify_all()
        return "250 Message accepted for delivery"

    # -- lifecycle ---------------------------------------------------------------------------------
    def start(self) -> "MailCatcher":
        self._controller = _Controller(self, hostname=self.host, port=self.port)
        self._controller.start()
        self.port = self._controller.port
        if self.http_port is not None:
            self.http = MailCatcherHTTP(self, host=self.host, port=self.http_port).start()
            self.http_port = self.http.port
        return self

    def stop(self) -> None:
        if self.http:
            self.http.stop()
            self.http = None
        if self._controller:
            self._controller.stop()
            self._controller = None

    def __enter__(self):
        return self.start()

    def __exit__(self, *exc):
        self.stop()

    @property
    def url(self) -> str:
        return f"smtp://{self.host}:{self.port}"

    @property
    def http_url(self) -> str | None:
        return self.http.url if self.http else None

    # -- inbox -------------------------------------------------------------------------------------
    @property
    def messages(self) -> list[CapturedMail]:
        with self._changed:
            return list(self._messages)

    def clear(self) -> None:
        with self._changed:
            self._messages.clear()

    def get(self, mail_id: int) -> CapturedMail | None:
        return next((m for m in self.messages if m.id == mail_id), None)

    def wait_for(self, predicate=None, timeout: float = 5.0) -> CapturedMail:
        """The first captured message matching `predicate` (any, if None), waiting up to `timeout` s."""
        predicate = predicate or (lambda mail: True)
        deadline = time.monotonic() + timeout
        with self._changed:
            while True:
                found = next((m for m in self._messages if predicate(m)), None)
                if found is not None:
                    return found
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    raise TimeoutError(f"no matching mail within {timeout}s ({len(self._messages)} captured)")
                self._changed.wait(remaining)


_MESSAGE = re.compile(r"^/messages/(?P<id>\d+)(?P<rest>/html|/attachments/(?P<n>\d+))?$")


class MailCatcherHTTP(StandIn):
    name = "mail-catcher-http"

    def __init__(self, catcher: MailCatcher, host: str = "127.0.0.1", port: int = 0):
        super().__init__(host, port)
        self.catcher = catcher

    def handle(self, request: Request) -> Response:
        base = f"{self.url}/messages"
        if request.path == "/messages" and request.method == "DELETE":
            self.catcher.clear()
            return Response(200, {"cleared": True})
        if request.method != "GET":
            return Response(405, {"error": "method not allowed"})
        messages = self.catcher.messages
        to = (request.query.get("to") or "").lower()
        if to:
            messages = [m for m in messages if to in (r.lower() for r in m.recipients)]
        if request.path == "/messages":
            return Response(200, {"messages": [m.as_dict(base) for m in messages]})
        if request.path == "/":
            return Response(200, self._inbox_page(messages))
        match = _MESSAGE.match(request.path)
        mail = self.catcher.get(int(match["id"])) if match else None
        if mail is None:
            return Response(404, {"error": f"not found: {request.path}"})
        if not match["rest"]:
            return Response(200, mail.as_dict(base))
        if match["rest"] == "/html":
            return Response(200, mail.html or f"<pre>{html.escape(mail.text or '')}</pre>")
        n = int(match["n"])
        if n >= len(mail.attachments):
            return Response(404, {"error": f"no attachment {n}"})
        attachment = mail.attachments[n]
        disposition = f'attachment; filename="{attachment.filename}"' if attachment.filename else "attachment"
        return Response(200, attachment.data, content_type=attachment.content_type,
                        headers={"Content-Disposition": disposition})

    def _inbox_page(self, mails: list[CapturedMail]) -> str:
        mail_rows = "".join(
            f"<tr><td>{m.id}</td><td>{_when(m.received_at)}</td><td>{html.escape(', '.join(m.recipients))}</td>"
            f'<td><a href="/messages/{m.id}/html">{html.escape(m.subject or "(no subject)")}</a></td>'
            f"<td>{len(m.attachments)}</td></tr>" for m in reversed(mails))
        page = ["<!doctype html><meta charset=utf-8><title>Sandbox inbox</title>",
                "<style>body{font-family:sans-serif;margin:2em}table{border-collapse:collapse}"
                "td,th{border:1px solid #ccc;padding:4px 8px;text-align:left;vertical-align:top}"
                "td.text{white-space:pre-wrap;max-width:50em}</style>",
                "<h1>Sandbox inbox</h1><p>Everything the console sent, newest first. Reload to see new messages.</p>",
                f"<h2>Email ({len(mails)})</h2>"]
        page.append("<table><tr><th>#</th><th>Received (UTC)</th><th>To</th><th>Subject</th><th>Attachments</th></tr>"
                    f"{mail_rows}</table>" if mails else "<p>No email yet.</p>")
        if self.catcher.whatsapp_messages is not None:
            texts = list(reversed(self.catcher.whatsapp_messages()))
            page.append(f'<h2 id="whatsapp">WhatsApp ({len(texts)})</h2>')
            page.append("<table><tr><th>Sent (UTC)</th><th>To</th><th>Message</th></tr>" + "".join(
                f"<tr><td>{html.escape(str(t.get('sent_at', '')).replace('T', ' ').rstrip('Z'))}</td>"
                f"<td>+{html.escape(str(t.get('number', '')))}</td>"
                f"<td class=text>{html.escape(str(t.get('text', '')))}</td></tr>" for t in texts) + "</table>"
                if texts else "<p>No WhatsApp message yet (the console sends them in dunning, to customers with a phone number).</p>")
        return "".join(page)


def _when(timestamp: float) -> str:
    return datetime.fromtimestamp(timestamp, timezone.utc).strftime("%Y-%m-%d %H:%M:%S")
