"""The bundle host: manifests and bundles over HTTP and as a file:// tree, pinning and corruption."""
import hashlib
import json
from urllib.request import urlopen

import httpx
import pytest

from sandbox.bundles import BundleHost

V1 = b"export default { fetch() { return new Response('v1'); } };\n"
V2 = b"export default { fetch() { return new Response('v2'); } };\n"


@pytest.fixture(scope="module")
def http():
    with httpx.Client(timeout=5) as client:  # one client: building one loads the CA bundle (~0.3 s)
        yield client


@pytest.fixture
def host(tmp_path):
    with BundleHost(tmp_path / "bundles") as server:
        yield server


def fetch_verified(http, manifest_url):
    """What the console does: read the manifest, fetch the bundle, compare the hash."""
    manifest = http.get(manifest_url).json()
    content = http.get(manifest["bundle_url"]).content
    return manifest, content, hashlib.sha256(content).hexdigest() == manifest["sha256"]


def test_published_release_is_the_latest_manifest_with_matching_sha256(host, http):
    returned = host.publish("v1.0.0", V1)
    manifest, content, ok = fetch_verified(http, host.manifest_url())
    assert ok and content == V1
    assert manifest == returned
    assert manifest["version"] == "v1.0.0" and manifest["size"] == len(V1)
    assert manifest["sha256"] == hashlib.sha256(V1).hexdigest()
    assert manifest["bundle_url"] == f"{host.url}/bundles/v1.0.0/worker.mjs"
    assert manifest["published_at"].endswith("Z")


def test_bundle_is_served_as_javascript(host, http):
    host.publish("v1.0.0", V1)
    response = http.get(f"{host.url}/bundles/v1.0.0/worker.mjs")
    assert response.headers["Content-Type"] == "application/javascript"


def test_newer_release_becomes_latest_and_older_stays_pinnable(host, http):
    host.publish("v1.0.0", V1)
    host.publish("v1.1.0", V2)
    latest, latest_content, _ = fetch_verified(http, host.manifest_url())
    pinned, pinned_content, ok = fetch_verified(http, host.manifest_url("v1.0.0"))
    assert (latest["version"], latest_content) == ("v1.1.0", V2)
    assert (pinned["version"], pinned_content, ok) == ("v1.0.0", V1, True)
    assert host.versions() == ["v1.0.0", "v1.1.0"]


def test_release_published_without_make_latest_leaves_latest_alone(host, http):
    host.publish("v1.0.0", V1)
    host.publish("v2.0.0-rc1", V2, make_latest=False)
    assert http.get(host.manifest_url()).json()["version"] == "v1.0.0"
    assert http.get(host.manifest_url("v2.0.0-rc1")).json()["version"] == "v2.0.0-rc1"


def test_set_latest_rolls_the_latest_manifest_back(host, http):
    host.publish("v1.0.0", V1)
    host.publish("v1.1.0", V2)
    host.set_latest("v1.0.0")
    assert http.get(host.manifest_url()).json()["version"] == "v1.0.0"


def test_corrupted_bundle_no_longer_matches_its_sha256(host, http):
    host.publish("v1.0.0", V1)
    host.corrupt("v1.0.0")
    manifest, content, ok = fetch_verified(http, host.manifest_url())
    assert not ok
    assert len(content) == manifest["size"]


def test_no_release_yet_answers_404(host, http):
    assert http.get(host.manifest_url()).status_code == 404
    host.publish("v1.0.0", V1)
    host.unpublish_latest()
    assert http.get(host.manifest_url()).status_code == 404
    assert http.get(host.manifest_url("v1.0.0")).status_code == 200


def test_works_as_a_file_tree_without_a_server(tmp_path):
    host = BundleHost(tmp_path / "tree")  # never started
    host.publish("v1.0.0", V1)
    manifest = json.loads(urlopen(host.manifest_file_url()).read())
    assert manifest["bundle_url"].startswith("file://")
    content = urlopen(manifest["bundle_url"]).read()
    assert hashlib.sha256(content).hexdigest() == manifest["sha256"]
    pinned = json.loads(urlopen(host.manifest_file_url("v1.0.0")).read())
    assert pinned["version"] == "v1.0.0"


def test_paths_outside_the_folder_are_not_served(host, tmp_path, http):
    (tmp_path / "secret.txt").write_text("nope")
    for path in ("/../secret.txt", "/%2e%2e/secret.txt", "/bundles/../../secret.txt"):
        assert http.get(f"{host.url}{path}").status_code == 404


def test_writes_are_refused(host, http):
    assert http.post(host.manifest_url(), json={}).status_code == 405


@pytest.mark.parametrize("version", ["", "../evil", "v1/../../x", "a" * 65])
def test_invalid_version_is_refused(host, version):
    with pytest.raises(ValueError):
        host.publish(version, V1)


def test_injected_failures_for_one_path(host, http):
    host.publish("v1.0.0", V1)
    host.fail_next(503, count=2, path="/manifest.json")
    host.fail_next("drop", path="/bundles/v1.0.0/worker.mjs")
    assert http.get(host.manifest_url("v1.0.0")).status_code == 200
    assert [http.get(host.manifest_url()).status_code for _ in range(3)] == [503, 503, 200]
    with pytest.raises(httpx.RemoteProtocolError):
        http.get(f"{host.url}/bundles/v1.0.0/worker.mjs")
    assert http.get(f"{host.url}/bundles/v1.0.0/worker.mjs").content == V1
