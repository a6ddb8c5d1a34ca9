"""Bundle releases: the release the manifest names, remembered immutably, and the verified bundles of one run."""
from __future__ import annotations

import logging
import time
from datetime import timedelta

from django.conf import settings
from django.db import transaction
from django.utils import timezone

from deployments.cloudflare import PreparedUpload, prepare_upload
from deployments.manifest import Manifest, ManifestError, bundle_fetch, manifest_fetch
from deployments.models import BundleRelease
from deployments.selectors import latest_release

log = logging.getLogger("deployments")

MANIFEST_FRESH_SECONDS = 60  # a release read this recently is trusted without asking the manifest again
MANIFEST_READ_TIMEOUT = 5.0  # a page waits at most this long for the manifest
_failed_reads: dict[str, float] = {}  # manifest URL -> monotonic time of the last failed on-demand read

def release_record(manifest: Manifest) -> BundleRelease:
    """Remember the release the manifest names and make it the latest. A version whose sha256 changed is refused:
    a release is immutable, so a new hash under an old name is a tampered or botched publish."""
    now = timezone.now()
    with transaction.atomic():
        release, created = BundleRelease.objects.select_for_update().get_or_create(
            version=manifest.version,
            defaults={"bundle_url": manifest.bundle_url, "sha256": manifest.sha256, "size": manifest.size, "last_seen_at": now})
        if not created:
            if release.sha256 != manifest.sha256:
                raise ManifestError(f"Release {manifest.version} was seen before with sha256 {release.sha256[:12]}..., "
                                    f"the manifest now says {manifest.sha256[:12]}...; not pushed.")
            release.bundle_url, release.size, release.last_seen_at = manifest.bundle_url, manifest.size, now
            release.save(update_fields=["bundle_url", "size", "last_seen_at"])
    return release


def release_latest_read() -> BundleRelease | None:
    """The latest release, reading the manifest first unless a release was seen in the last minute, so
    "Push now" and the deploy page do not wait for the hourly run to learn of a release. Network: call it
    outside any transaction that holds row locks. A manifest that cannot be read is logged, retried after a
    minute, and the release already known (if any) is returned."""
    release = latest_release()
    url = settings.HELM_BUNDLE_MANIFEST_URL
    if not url or (release is not None and release.last_seen_at >= timezone.now() - timedelta(seconds=MANIFEST_FRESH_SECONDS)):
        return release
    failed_at = _failed_reads.get(url)
    if failed_at is not None and time.monotonic() - failed_at < MANIFEST_FRESH_SECONDS:
        return release
    try:
        return release_record(manifest_fetch(url, timeout=MANIFEST_READ_TIMEOUT))
    except ManifestError as exc:
        _failed_reads[url] = time.monotonic()
        log.warning("Manifest not read on demand: %s", exc)
        return release


class Bundles:
    """Verified bundles per version for one run, as ready-to-send uploads (fetched, checked and encoded once;
    a failure is remembered too)."""

    def __init__(self, manifest: Manifest | None = None):
        self._data: dict[str, PreparedUpload | ManifestError] = {}
        self._manifest = manifest  # a dry run reads the manifest's release without recording it

    def get(self, version: str) -> PreparedUpload:
        if version not in self._data:
            try:
                if self._manifest is not None and self._manifest.version == version:
                    release = self._manifest
                else:
                    release = BundleRelease.objects.filter(version=version).first()
                if release is None:
                    raise ManifestError(f"Release {version} has never been named by the manifest.")
                self._data[version] = prepare_upload(
                    bundle_fetch(version=version, bundle_url=release.bundle_url, sha256=release.sha256))
            except ManifestError as exc:
                self._data[version] = exc
        value = self._data[version]
        if isinstance(value, ManifestError):
            raise value
        return value
