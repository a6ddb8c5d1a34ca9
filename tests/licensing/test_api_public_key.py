import base64

import pytest

from licensing.tokens import kid_for
from tests.licensing.conftest import new_signing_key

URL = "/api/license/public-key"


def test_public_key_lists_current_and_previous_keys(client, settings, signing_key):
    _, old_public = new_signing_key()
    settings.LICENSE_VERIFY_KEYS_PREVIOUS = [f"old-2025:{old_public}"]
    response = client.get(URL)
    assert response.status_code == 200 and "max-age" in response["Cache-Control"]
    body = response.json()
    current = kid_for(base64.b64decode(signing_key))
    assert body["currentKid"] == current
    assert [(k["kid"], k["current"]) for k in body["keys"]] == [(current, True), ("old-2025", False)]
    assert body["keys"][0]["publicKeyBase64"] == signing_key and body["keys"][0]["kty"] == "OKP"
    assert settings.LICENSE_SIGNING_KEY not in response.content.decode()


def test_public_key_without_any_key_is_503(client, settings):
    settings.LICENSE_SIGNING_KEY = ""
    response = client.get(URL)
    assert response.status_code == 503 and response.json()["code"] == "SIGNING_UNAVAILABLE"


@pytest.mark.parametrize("method", ["post", "put", "delete"])
def test_public_key_is_read_only(client, signing_key, method):
    assert getattr(client, method)(URL).status_code == 405
