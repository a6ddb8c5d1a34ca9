from datetime import datetime, timezone

import pytest

from dunning.services import dunning_policy_ensure_default


@pytest.fixture
def policy(db):
    return dunning_policy_ensure_default()


@pytest.fixture
def t0():
    """A fixed moment for the first failure: every test drives time from it."""
    return datetime(2026, 3, 2, 9, 0, tzinfo=timezone.utc)


@pytest.fixture(autouse=True)
def _fast_password_hashing(settings):
    # admin_client logs a superuser in for every admin test; PBKDF2's real cost would dominate the run.
    settings.PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]
