import base64
import json
from datetime import timedelta

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from django.utils import timezone

from licensing.tokens import (
    DEVICE, LICENSE, SigningUnavailable, TokenInvalid, b64url, b64url_decode, kid_for, signing_key, token_sign,
    token_verify, verify_keys,
)
from tests.licensing.conftest import new_signing_key


def _sign(device="dev-1", hours=1, typ=DEVICE):
    return token_sign({"license": 1, "device": device, "customer": 1, "entitlement": "pro", "gen": 1},
                      typ=typ, expires_at=timezone.now() + timedelta(hours=hours))


def test_signed_token_verifies_and_carries_expiry(signing_key):
    claims = token_verify(_sign(), device_id="dev-1")
    assert claims["device"] == "dev-1" and claims["entitlement"] == "pro"
    assert claims["expiresAt"].endswith("Z") and claims["exp"] > claims["iat"]


def test_tampered_payload_is_rejected(signing_key):
    header, payload, sig = _sign().split(".")
    claims = json.loads(b64url_decode(payload))
    claims["entitlement"] = "team"
    forged = ".".join([header, b64url(json.dumps(claims).encode()), sig])
    with pytest.raises(TokenInvalid) as exc:
        token_verify(forged)
    assert exc.value.reason == "bad_signature"


def test_tampered_signature_is_rejected(signing_key):
    header, payload, sig = _sign().split(".")
    raw = bytearray(b64url_decode(sig))
    raw[0] ^= 1
    with pytest.raises(TokenInvalid):
        token_verify(".".join([header, payload, b64url(bytes(raw))]))


def test_expired_token_is_rejected(signing_key):
    token = _sign(hours=1)
    with pytest.raises(TokenInvalid) as exc:
        token_verify(token, now=timezone.now() + timedelta(hours=1, seconds=1))
    assert exc.value.reason == "expired"


def test_token_for_another_device_is_rejected(signing_key):
    with pytest.raises(TokenInvalid) as exc:
        token_verify(_sign(device="dev-1"), device_id="dev-2")
    assert exc.value.reason == "wrong_device"


def test_licence_blob_is_not_accepted_as_device_token(signing_key):
    with pytest.raises(TokenInvalid) as exc:
        token_verify(_sign(typ=LICENSE))
    assert exc.value.reason == "wrong_type"
    assert token_verify(_sign(typ=LICENSE), typ=LICENSE)["device"] == "dev-1"


def test_token_signed_by_an_unknown_key_is_rejected(settings, signing_key):
    token = _sign()
    settings.LICENSE_SIGNING_KEY = new_signing_key()[0]
    with pytest.raises(TokenInvalid) as exc:
        token_verify(token)
    assert exc.value.reason == "unknown_key"


def test_token_with_a_forged_kid_is_rejected(settings, signing_key):
    """Another key claiming the current kid fails on the signature, not silently accepted."""
    current_kid = next(iter(verify_keys()))
    other = Ed25519PrivateKey.generate()
    header = b64url(json.dumps({"alg": "EdDSA", "kid": current_kid, "typ": DEVICE}).encode())
    payload = b64url(json.dumps({"device": "d", "exp": 2**40}).encode())
    sig = b64url(other.sign(f"{header}.{payload}".encode()))
    with pytest.raises(TokenInvalid) as exc:
        token_verify(f"{header}.{payload}.{sig}")
    assert exc.value.reason == "bad_signature"


@pytest.mark.parametrize("token", ["", "abc", "a.b", "a.b.c.d", "x" * 5000, "e30.e30.AA", None, 12])
def test_malformed_tokens_are_rejected(signing_key, token):
    with pytest.raises(TokenInvalid):
        token_verify(token)


def test_alg_none_is_rejected(signing_key):
    header, payload, _ = _sign().split(".")
    none_header = b64url(json.dumps({"alg": "none", "kid": json.loads(b64url_decode(header))["kid"], "typ": DEVICE}).encode())
    with pytest.raises(TokenInvalid):
        token_verify(f"{none_header}.{payload}.")


def test_rotation_keeps_old_tokens_valid_while_the_old_key_is_published(settings):
    old_private, old_public = new_signing_key()
    settings.LICENSE_SIGNING_KEY = old_private
    old_kid = next(iter(verify_keys()))
    old_token = _sign()

    settings.LICENSE_SIGNING_KEY = new_signing_key()[0]
    settings.LICENSE_VERIFY_KEYS_PREVIOUS = [f"{old_kid}:{old_public}"]
    new_token = _sign()
    kids = list(verify_keys())
    assert len(kids) == 2 and kids[1] == old_kid
    assert token_verify(old_token)["device"] == token_verify(new_token)["device"] == "dev-1"
    assert json.loads(b64url_decode(new_token.split(".")[0]))["kid"] == kids[0] != old_kid

    settings.LICENSE_VERIFY_KEYS_PREVIOUS = []  # overlap over: the old key is retired
    with pytest.raises(TokenInvalid):
        token_verify(old_token)
    assert token_verify(new_token)


def test_previous_key_without_kid_gets_the_derived_kid(settings):
    old_private, old_public = new_signing_key()
    settings.LICENSE_SIGNING_KEY = old_private
    token = _sign()
    settings.LICENSE_SIGNING_KEY = new_signing_key()[0]
    settings.LICENSE_VERIFY_KEYS_PREVIOUS = [old_public]
    assert kid_for(base64.b64decode(old_public)) in verify_keys()
    assert token_verify(token)


def test_pem_signing_key_is_accepted(settings):
    pem = Ed25519PrivateKey.generate().private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()).decode()
    settings.LICENSE_SIGNING_KEY = pem
    assert token_verify(_sign())


@pytest.mark.parametrize("value", ["not-a-key", base64.b64encode(b"short").decode(), "-----BEGIN PRIVATE KEY-----\nxx\n"])
def test_unusable_signing_key_is_reported_without_its_value(settings, value):
    settings.LICENSE_SIGNING_KEY = value
    with pytest.raises(SigningUnavailable) as exc:
        signing_key()
    assert value not in str(exc.value)


def test_missing_signing_key(settings):
    settings.LICENSE_SIGNING_KEY = ""
    with pytest.raises(SigningUnavailable, match="not set"):
        _sign()


@pytest.mark.parametrize("field, value", [("kid", ["a"]), ("kid", {"a": 1}), ("typ", ["device"]), ("typ", {"t": 1}),
                                          ("alg", ["EdDSA"]), ("kid", 7)])
def test_a_header_field_that_is_not_a_string_is_malformed(signing_key, field, value):
    header, payload, sig = _sign().split(".")
    fields = {**json.loads(b64url_decode(header)), field: value}
    crafted = b64url(json.dumps(fields).encode())
    with pytest.raises(TokenInvalid, match="malformed"):
        token_verify(f"{crafted}.{payload}.{sig}")
