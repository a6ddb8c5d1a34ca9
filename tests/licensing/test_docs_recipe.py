"""The verification recipe in docs/licensing.md is run as written, against tokens from the API."""
import json
import re
import time
from datetime import timedelta
from pathlib import Path

import pytest
from django.utils import timezone

from licensing.tokens import DEVICE, token_sign
from tests.licensing.conftest import new_signing_key
from tests.licensing.factories import DeviceActivationFactory, LicenseFactory

DOC = Path(__file__).resolve().parents[2] / "docs" / "licensing.md"
pytestmark = pytest.mark.django_db


@pytest.fixture
def recipe():
    section = DOC.read_text().split("## Desktop app recipe", 1)[1]
    code = re.search(r"```python\n(.*?)```", section, re.S).group(1)
    namespace = {}
    exec(compile(code, str(DOC), "exec"), namespace)
    return namespace["verify_license_token"]


def test_recipe_accepts_a_real_token_and_rejects_the_rest(api, settings, recipe):
    activation = DeviceActivationFactory(device_id="mac-01", license=LicenseFactory())
    body = api.get("/api/license/status", {"device_id": "mac-01"}, HTTP_X_LICENSE_KEY=activation.license.key).json()
    key_set = json.loads(api.get("/api/license/public-key").content)
    token = body["deviceAccessToken"]

    claims = recipe(token, key_set, "mac-01")
    assert claims["license"] == activation.license.pk and claims["expiresAt"] == body["deviceAccessTokenExpiresAtIso"]
    assert recipe(body["license"], key_set, "mac-01", expected_type="BC-LICENSE")["active"] is True
    assert recipe(token, key_set, "another-machine") is None
    assert recipe(body["license"], key_set, "mac-01") is None  # a blob is not a device token
    assert recipe(token[:-3] + ("AAA" if not token.endswith("AAA") else "BBB"), key_set, "mac-01") is None
    assert recipe(token, key_set, "mac-01", now=claims["exp"]) is None  # expired
    assert recipe("not a token", key_set, "mac-01") is None

    # After a rotation the old token still verifies while its key is published, then no longer.
    old_kid = key_set["currentKid"]
    old_public = next(k["publicKeyBase64"] for k in key_set["keys"] if k["kid"] == old_kid)
    settings.LICENSE_SIGNING_KEY = new_signing_key()[0]
    settings.LICENSE_VERIFY_KEYS_PREVIOUS = [f"{old_kid}:{old_public}"]
    rotated = json.loads(api.get("/api/license/public-key").content)
    assert recipe(token, rotated, "mac-01") is not None
    settings.LICENSE_VERIFY_KEYS_PREVIOUS = []
    assert recipe(token, json.loads(api.get("/api/license/public-key").content), "mac-01") is None


def test_recipe_rejects_a_token_signed_by_an_unpublished_key(api, settings, recipe):
    key_set = json.loads(api.get("/api/license/public-key").content)
    settings.LICENSE_SIGNING_KEY = new_signing_key()[0]
    stranger = token_sign({"device": "mac-01"}, typ=DEVICE, expires_at=timezone.now() + timedelta(hours=1))
    assert recipe(stranger, key_set, "mac-01", now=time.time()) is None
