import pytest

from deployments.manifest import ManifestError, bundle_fetch, manifest_fetch, manifest_parse
from tests.deployments.conftest import BUNDLE_V1

GOOD = {"version": "v1", "bundle_url": "worker.mjs", "sha256": "a" * 64, "size": 3}


def test_manifest_over_http_resolves_the_bundle_and_verifies_it(bundles):
    manifest = manifest_fetch(bundles.manifest_url())
    assert manifest.version == "v1.0.0" and manifest.bundle_url.startswith(bundles.url)
    assert bundle_fetch(version=manifest.version, bundle_url=manifest.bundle_url, sha256=manifest.sha256) == BUNDLE_V1


def test_a_corrupted_bundle_fails_its_checksum(bundles):
    manifest = manifest_fetch(bundles.manifest_file_url())
    bundles.corrupt("v1.0.0")
    with pytest.raises(ManifestError, match="checksum"):
        bundle_fetch(version=manifest.version, bundle_url=manifest.bundle_url, sha256=manifest.sha256)


@pytest.mark.parametrize("data, message", [
    ([], "not a JSON object"),
    ({**GOOD, "version": "../etc"}, "version"),
    ({**GOOD, "version": None}, "version"),
    ({**GOOD, "sha256": "xyz"}, "sha256"),
    ({**GOOD, "bundle_url": ""}, "bundle_url"),
    ({**GOOD, "bundle_url": "ftp://x/y"}, "https, http or file"),
    ({**GOOD, "size": -1}, "size"),
])
def test_malformed_manifests_are_refused(data, message):
    with pytest.raises(ManifestError, match=message):
        manifest_parse(data, base_url="https://bundles.example.com/manifest.json")


def test_unreadable_manifests_say_why_without_the_query_string(tmp_path, settings):
    (tmp_path / "m.json").write_text("{not json")
    with pytest.raises(ManifestError, match="not JSON"):
        manifest_fetch((tmp_path / "m.json").as_uri())
    with pytest.raises(ManifestError, match="Unsupported URL scheme"):
        manifest_fetch("gopher://x/manifest.json")
    settings.HELM_BUNDLE_MANIFEST_URL = ""
    with pytest.raises(ManifestError, match="not set"):
        manifest_fetch()


def test_a_missing_http_manifest_names_the_status_not_the_secret(bundles):
    with pytest.raises(ManifestError) as info:
        manifest_fetch(bundles.url + "/nope.json?token=s3cr3t-manifest-token")
    assert "404" in str(info.value) and "s3cr3t" not in str(info.value)


def test_a_release_whose_sha_changes_under_the_same_version_is_refused(db):
    from deployments.manifest import Manifest
    from deployments.releases import release_record

    release_record(Manifest("v1", "https://b/x.mjs", "a" * 64, 1))
    with pytest.raises(ManifestError, match="seen before"):
        release_record(Manifest("v1", "https://b/x.mjs", "b" * 64, 1))
