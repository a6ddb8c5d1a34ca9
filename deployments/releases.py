"""Bundle releases: the release the manifest names, remembered immutably, and the verified bundles of one run."""
from __future__ import annotations

from django.db import transaction
from django.utils import timezone

from deployments.cloudflare import PreparedUpload, prepare_upload
from deployments.manifest import Manifest, ManifestError, bundle_fetch
from deployments.models import BundleRelease

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
