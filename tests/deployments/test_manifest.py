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


# --- Schemes and redirects ------------------------------------------------------------------------
@pytest.mark.parametrize("bundle_url", ["file:///etc/passwd", "http://bundles.example.com/worker.mjs",
                                        "//evil.example.com/x.mjs".replace("//", "file://", 1)])
def test_an_https_manifest_names_only_https_bundles(bundle_url, settings):
    settings.DEPLOY_ALLOW_HTTP_BUNDLES = True  # not even the sandbox setting lets an https manifest downgrade
    with pytest.raises(ManifestError, match="https"):
        manifest_parse({**GOOD, "bundle_url": bundle_url}, base_url="https://bundles.example.com/manifest.json")


def test_an_https_manifest_resolves_a_relative_bundle_over_https():
    manifest = manifest_parse(GOOD, base_url="https://bundles.example.com/r/manifest.json")
    assert manifest.bundle_url == "https://bundles.example.com/r/worker.mjs"


def test_http_is_refused_unless_the_sandbox_setting_allows_it(bundles, settings):
    settings.DEPLOY_ALLOW_HTTP_BUNDLES = False
    with pytest.raises(ManifestError, match="DEPLOY_ALLOW_HTTP_BUNDLES"):
        manifest_fetch(bundles.manifest_url())
    with pytest.raises(ManifestError, match="DEPLOY_ALLOW_HTTP_BUNDLES"):
        manifest_parse({**GOOD, "bundle_url": "http://b.example/x.mjs"}, base_url="file:///srv/manifest.json")
    settings.DEPLOY_ALLOW_HTTP_BUNDLES = True
    assert manifest_fetch(bundles.manifest_url()).version == "v1.0.0"


def test_a_remote_manifest_never_names_a_file_bundle(settings):
    settings.DEPLOY_ALLOW_HTTP_BUNDLES = True
    with pytest.raises(ManifestError, match="file"):
        manifest_parse({**GOOD, "bundle_url": "file:///etc/passwd"}, base_url="http://127.0.0.1:9/manifest.json")


@pytest.fixture
def redirector():
    """An http server that answers every GET with a redirect to ?to=<url>."""
    import threading
    from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
    from urllib.parse import parse_qs, urlsplit

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self):
            self.send_response(302)
            self.send_header("Location", parse_qs(urlsplit(self.path).query)["to"][0])
            self.send_header("Content-Length", "0")
            self.end_headers()

        def log_message(self, *args):
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield f"http://127.0.0.1:{server.server_port}"
    server.shutdown()


def test_a_redirect_to_another_scheme_is_not_followed(redirector, bundles, settings):
    settings.DEPLOY_ALLOW_HTTP_BUNDLES = True
    for target in ("https://127.0.0.1:9/manifest.json", "file:///etc/passwd"):
        with pytest.raises(ManifestError, match="redirect"):
            manifest_fetch(f"{redirector}/m.json?to={target}")
    # A redirect that keeps the scheme is followed.
    assert manifest_fetch(f"{redirector}/m.json?to={bundles.manifest_url()}").version == "v1.0.0"
