"""Project-wide test fixtures. App-specific fixtures live in tests/<app>/conftest.py."""
import pytest

TEST_MASTER_KEY = "test-master-key-0123456789abcdef"


@pytest.fixture(autouse=True)
def _console_settings(settings, tmp_path, monkeypatch):
    """Every test starts from a known, offline configuration (no real service, no real secret)."""
    # PBKDF2's deliberate slowness costs ~0.3 s per login in tests; MD5 is fine for throwaway users.
    settings.PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]
    # Tests log in as often as they need; tests/core/test_staff_login.py turns the real lockout on.
    settings.AXES_ENABLED = False
    settings.STAFF_2FA = "optional"
    settings.CLOUD_MASTER_KEY = TEST_MASTER_KEY
    settings.CLOUD_MASTER_KEY_PREVIOUS = []
    settings.EMAIL_BACKEND = "django.core.mail.backends.locmem.EmailBackend"
    settings.MEDIA_ROOT = str(tmp_path / "media")
    settings.CACHES = {"default": {"BACKEND": "django.core.cache.backends.locmem.LocMemCache"}}
    # LocMemCache keeps its entries per process, not per test: rate-limit counts of earlier tests in the
    # same minute would otherwise carry over.
    from django.core.cache import caches
    caches["default"].clear()
    settings.Q_CLUSTER = {**settings.Q_CLUSTER, "sync": True}
    # django-q2 reads Q_CLUSTER once at import: the flag itself must be patched for async_task to run inline.
    from django_q.conf import Conf
    monkeypatch.setattr(Conf, "SYNC", True)
    settings.STRIPE_SECRET_KEY = ""
    settings.STRIPE_WEBHOOK_SECRET = ""
    settings.OPS_SECRET = ""
    settings.LICENSE_SIGNING_KEY = ""
    settings.HELM_BUNDLE_MANIFEST_URL = ""
    yield


def open_transactions() -> list:
    """The atomic blocks the code under test has open (the test case's own wrapping ones excluded)."""
    from django.db import connections

    return [block for conn in connections.all(initialized_only=True) for block in conn.atomic_blocks
            if not block._from_testcase]


@pytest.fixture(autouse=True)
def _no_stripe_call_inside_a_transaction(monkeypatch):
    """Every Stripe call any test makes fails it when a transaction of the code under test is open: a
    network call there would hold that transaction's row locks for as long as Stripe takes."""
    from billing_console.stripe import gateway

    real_call = gateway._call

    def guarded(action, fn):
        if open_transactions():
            raise AssertionError(f"Stripe called to {action} inside a transaction")
        return real_call(action, fn)

    monkeypatch.setattr(gateway, "_call", guarded)
