"""A local bundle host: release manifests and Worker bundles served from a folder.

Layout under `root` (usable as a file:// tree too):

    manifest.json                        the latest release (absent until a release is published)
    releases/<version>/manifest.json     each release, so a manifest URL can be pinned to an old one
    bundles/<version>/worker.mjs         the bundle

A manifest is {"version", "bundle_url", "sha256", "size", "published_at"}. On disk `bundle_url` is a
file:// URL; over HTTP the host rewrites it to its own http URL, so one tree serves both ways.
"""
from __future__ import annotations

import hashlib
import json
import mimetypes
import re
import tempfile
import time
from datetime import datetime, timezone
from pathlib import Path

from ._faults import DROP, Faults
from ._http import Request, Response, StandIn

_VERSION = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._+-]{0,63}$")
_TYPES = {".mjs": "application/javascript", ".js": "application/javascript", ".json": "application/json"}


class BundleHost(StandIn):
    name = "bundle-host"

    def __init__(self, root: str | Path | None = None, host: str = "127.0.0.1", port: int = 0):
        super().__init__(host, port)
        if root is None:
            self._tmp = tempfile.TemporaryDirectory(prefix="sandbox-bundles-")
            root = self._tmp.name
        self.root = Path(root).resolve()
        self.root.mkdir(parents=True, exist_ok=True)
        self.faults = Faults()

    def fail_next(self, status: int | str, count: int = 1, path: str | None = None, delay: float = 0.0) -> None:
        """The next `count` HTTP reads (of `path` only, e.g. "/manifest.json", if given) answer
        `status`, or drop the connection (DROP); the file:// tree is not affected."""
        self.faults.add(status, count=count, scope=path, delay=delay)

    # -- publishing -----------------------------------------------------------------------------
    def publish(self, version: str, content: bytes, make_latest: bool = True) -> dict:
        """Write the bundle and its manifest; returns the manifest as a client of this host sees it."""
        if not _VERSION.match(version):
            raise ValueError(f"invalid version {version!r}")
        bundle = self.root / "bundles" / version / "worker.mjs"
        bundle.parent.mkdir(parents=True, exist_ok=True)
        bundle.write_bytes(content)
        manifest = {
            "version": version,
            "bundle_url": bundle.as_uri(),
            "sha256": hashlib.sha256(content).hexdigest(),
            "size": len(content),
            "published_at": datetime.now(timezone.utc).isoformat(timespec="seconds").replace("+00:00", "Z"),
        }
        text = json.dumps(manifest, indent=2) + "\n"
        with self.lock:
            release = self.root / "releases" / version / "manifest.json"
            release.parent.mkdir(parents=True, exist_ok=True)
            release.write_text(text)
            if make_latest:
                (self.root / "manifest.json").write_text(text)
        return self._as_served(manifest)

    def set_latest(self, version: str) -> None:
        """Point /manifest.json at an already published release (a rollback of the latest)."""
        with self.lock:
            (self.root / "manifest.json").write_text((self.root / "releases" / version / "manifest.json").read_text())

    def unpublish_latest(self) -> None:
        """No latest release: /manifest.json answers 404 (the "Almost there" readiness state)."""
        with self.lock:
            (self.root / "manifest.json").unlink(missing_ok=True)

    def corrupt(self, version: str) -> None:
        """Serve bytes that no longer match the manifest's sha256 (same size, one byte flipped)."""
        bundle = self.root / "bundles" / version / "worker.mjs"
        data = bytearray(bundle.read_bytes() or b"\0")
        data[-1] ^= 0xFF
        bundle.write_bytes(bytes(data))

    def versions(self) -> list[str]:
        releases = self.root / "releases"
        return sorted(p.name for p in releases.iterdir()) if releases.exists() else []

    # -- URLs -----------------------------------------------------------------------------------
    def manifest_url(self, version: str | None = None) -> str:
        """HTTP URL of the latest manifest, or of one release's (needs start())."""
        return f"{self.url}/{self._manifest_path(version)}"

    def manifest_file_url(self, version: str | None = None) -> str:
        return (self.root / self._manifest_path(version)).as_uri()

    @staticmethod
    def _manifest_path(version: str | None) -> str:
        return f"releases/{version}/manifest.json" if version else "manifest.json"

    def _as_served(self, manifest: dict) -> dict:
        if self._server is None:
            return manifest
        prefix = self.root.as_uri() + "/"
        if manifest.get("bundle_url", "").startswith(prefix):
            manifest = {**manifest, "bundle_url": f"{self.url}/{manifest['bundle_url'][len(prefix):]}"}
        return manifest

    # -- HTTP -----------------------------------------------------------------------------------
    def handle(self, request: Request) -> Response:
        if request.method not in ("GET", "HEAD"):
            return Response(405, {"error": "method not allowed"}, headers={"Allow": "GET, HEAD"})
        fault = self.faults.take({request.path})
        if fault:
            time.sleep(fault.delay)
            return None if fault.status == DROP else Response(fault.status, {"error": "injected failure"})
        path = (self.root / request.path.lstrip("/")).resolve()
        if not path.is_relative_to(self.root) or not path.is_file():
            return Response(404, {"error": f"not found: {request.path}"})
        if path.name == "manifest.json":
            manifest = self._as_served(json.loads(path.read_text()))
            return Response(200, manifest, headers={"Cache-Control": "no-cache"})
        content_type = _TYPES.get(path.suffix) or mimetypes.guess_type(path.name)[0] or "application/octet-stream"
        return Response(200, path.read_bytes(), content_type=content_type)
