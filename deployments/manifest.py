"""The bundle manifest and the bundles it names: https or file URLs, sha256 checked before use.

A manifest is JSON: {"version": "v0.4.1", "bundle_url": "...", "sha256": "<64 hex>", "size": 1234}.
A relative bundle_url is resolved against the manifest's own URL. An https manifest names only https
bundles, a remote manifest never a file, and a redirect never changes the scheme: whoever controls the
manifest's host must not make the console read local files or fetch over plain HTTP. Plain http is for
the sandbox only (DEPLOY_ALLOW_HTTP_BUNDLES); a file manifest is the operator's own.
"""
from __future__ import annotations

import hashlib
import json
import re
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import unquote, urljoin, urlsplit

import httpx
from django.conf import settings

from deployments.cloudflare import ssl_context

VERSION_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._+-]{0,63}$")
SHA256_RE = re.compile(r"^[0-9a-f]{64}$")


class ManifestError(Exception):
    """The manifest or a bundle cannot be used; the message says why (no secret in it)."""


@dataclass(frozen=True)
class Manifest:
    version: str
    bundle_url: str
    sha256: str
    size: int


def _safe_url(url: str) -> str:
    """The URL without query or credentials, for messages (a manifest URL may carry an access token)."""
    parts = urlsplit(url)
    return f"{parts.scheme}://{parts.hostname or ''}{parts.path}"


MAX_REDIRECTS = 5


def _check_remote_scheme(url: str) -> None:
    scheme = urlsplit(url).scheme
    if scheme == "http" and not settings.DEPLOY_ALLOW_HTTP_BUNDLES:
        raise ManifestError(f"{_safe_url(url)} is plain http: use https (http only for the sandbox, with "
                            "DEPLOY_ALLOW_HTTP_BUNDLES).")


def read_url(url: str, *, max_bytes: int, timeout: float = 30.0) -> bytes:
    scheme = urlsplit(url).scheme
    if scheme == "file":
        path = Path(unquote(urlsplit(url).path))
        try:
            if path.stat().st_size > max_bytes:
                raise ManifestError(f"{_safe_url(url)} is larger than {max_bytes} bytes.")
            return path.read_bytes()
        except OSError as exc:
            raise ManifestError(f"Cannot read {_safe_url(url)}: {exc.strerror or type(exc).__name__}.") from None
    if scheme not in ("http", "https"):
        raise ManifestError(f"Unsupported URL scheme {scheme!r} (use https, http or file).")
    _check_remote_scheme(url)
    try:
        with httpx.Client(timeout=timeout, follow_redirects=False, verify=ssl_context()) as client:
            for _ in range(MAX_REDIRECTS + 1):
                with client.stream("GET", url) as response:
                    if response.is_redirect:
                        target = urljoin(url, response.headers.get("Location", ""))
                        if urlsplit(target).scheme != scheme:
                            raise ManifestError(f"{_safe_url(url)} redirects to another scheme "
                                                f"({urlsplit(target).scheme or '?'}); not followed.")
                        url = target
                        continue
                    if response.status_code != 200:
                        raise ManifestError(f"{_safe_url(url)} answered HTTP {response.status_code}.")
                    chunks, total = [], 0
                    for chunk in response.iter_bytes():
                        total += len(chunk)
                        if total > max_bytes:
                            raise ManifestError(f"{_safe_url(url)} is larger than {max_bytes} bytes.")
                        chunks.append(chunk)
                    return b"".join(chunks)
    except httpx.HTTPError as exc:
        raise ManifestError(f"Cannot fetch {_safe_url(url)}: {type(exc).__name__}.") from None
    raise ManifestError(f"{_safe_url(url)} redirects more than {MAX_REDIRECTS} times.")


def manifest_fetch(url: str | None = None, *, timeout: float = 30.0) -> Manifest:
    url = url if url is not None else settings.HELM_BUNDLE_MANIFEST_URL
    if not url:
        raise ManifestError("HELM_BUNDLE_MANIFEST_URL is not set.")
    raw = read_url(url, max_bytes=256 * 1024, timeout=timeout)
    try:
        data = json.loads(raw)
    except ValueError:
        raise ManifestError(f"The manifest at {_safe_url(url)} is not JSON.") from None
    return manifest_parse(data, base_url=url)


def manifest_parse(data, *, base_url: str) -> Manifest:
    if not isinstance(data, dict):
        raise ManifestError("The manifest is not a JSON object.")
    version, bundle_url, sha256 = data.get("version"), data.get("bundle_url"), data.get("sha256")
    if not isinstance(version, str) or not VERSION_RE.match(version):
        raise ManifestError(f"The manifest's version {str(version)[:70]!r} is missing or malformed.")
    if not isinstance(bundle_url, str) or not bundle_url:
        raise ManifestError("The manifest has no bundle_url.")
    if not isinstance(sha256, str) or not SHA256_RE.match(sha256.lower()):
        raise ManifestError("The manifest's sha256 is missing or not 64 hex characters.")
    size = data.get("size", 0)
    if not isinstance(size, int) or size < 0:
        raise ManifestError("The manifest's size is not a non-negative integer.")
    bundle_url = urljoin(base_url, bundle_url)
    base_scheme, scheme = urlsplit(base_url).scheme, urlsplit(bundle_url).scheme
    if scheme not in ("http", "https", "file"):
        raise ManifestError("The manifest's bundle_url must be https, http or file.")
    if base_scheme == "https" and scheme != "https":
        raise ManifestError("An https manifest's bundle_url must be https too.")
    if scheme == "file" and base_scheme != "file":
        raise ManifestError("A remote manifest cannot name a file:// bundle.")
    if scheme == "http":
        _check_remote_scheme(bundle_url)
    return Manifest(version=version, bundle_url=bundle_url, sha256=sha256.lower(), size=size)


def bundle_fetch(*, version: str, bundle_url: str, sha256: str) -> bytes:
    """The bundle's bytes, only if their sha256 is the one the manifest promised."""
    data = read_url(bundle_url, max_bytes=settings.DEPLOY_BUNDLE_MAX_BYTES)
    actual = hashlib.sha256(data).hexdigest()
    if actual != sha256:
        raise ManifestError(f"Bundle {version} failed its checksum: the manifest says sha256 {sha256[:12]}..., "
                            f"the file at {_safe_url(bundle_url)} has {actual[:12]}...; not pushed.")
    return data


def manifest_preflight(mode: str) -> list[tuple[str, str]]:
    """preflight: the manifest answers and names a release (the core registers this, see apps.py)."""
    if not settings.HELM_BUNDLE_MANIFEST_URL:
        return []  # BC011 already says so
    try:
        manifest = manifest_fetch()
    except ManifestError as exc:
        return [("BC041", f"The bundle manifest names no usable release: {exc}")]
    return [] if manifest.version else [("BC041", "The bundle manifest names no release.")]
