import base64

import pytest
from django.core.cache import cache
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey


def new_signing_key() -> tuple[str, str]:
    """(base64 private key as LICENSE_SIGNING_KEY takes it, base64 public key)."""
    private = Ed25519PrivateKey.generate()
    raw = private.private_bytes(serialization.Encoding.Raw, serialization.PrivateFormat.Raw, serialization.NoEncryption())
    public = private.public_key().public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
    return base64.b64encode(raw).decode(), base64.b64encode(public).decode()


@pytest.fixture(autouse=True)
def _fast_passwords(settings):
    """admin_user hashes a password; PBKDF2's real cost is seconds per test on a busy 2-core machine."""
    settings.PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]


@pytest.fixture(autouse=True)
def _fresh_rate_limits():
    """Rate-limit counters live in the (locmem) cache: every test starts with none."""
    cache.clear()


@pytest.fixture
def signing_key(settings):
    private, public = new_signing_key()
    settings.LICENSE_SIGNING_KEY = private
    settings.LICENSE_VERIFY_KEYS_PREVIOUS = []
    return public


@pytest.fixture
def api(client, signing_key):
    """The Django test client with a signing key configured."""
    return client
