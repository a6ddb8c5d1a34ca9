import pytest
from django.contrib.auth import get_user_model

from billing_console.ops.support import support_group_ensure


@pytest.fixture
def support_user(db):
    user = get_user_model().objects.create_user("sam", "sam@example.com", "pw-support-123", is_staff=True)
    user.groups.add(support_group_ensure())
    return user


@pytest.fixture
def support_client(client, support_user):
    client.force_login(support_user)
    return client


@pytest.fixture
def admin_client_(client, admin_user):
    client.force_login(admin_user)
    return client


@pytest.fixture(autouse=True)
def _fast_passwords(settings):
    # PBKDF2 at full strength costs a second per login user on 2 cores; these tests are not about hashing.
    settings.PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]


# Real stand-ins on port 0, shared with the apps' own tests.
from tests.stripe.conftest import emulator, stripe_settings  # noqa: E402,F401
from tests.deployments.conftest import bundles, cloudflare  # noqa: E402,F401


@pytest.fixture
def manage_url():
    from billing_console.manage_links import manage_link_token

    def make(customer, suffix=""):
        return f"/manage/{manage_link_token(customer)}/{suffix}"

    return make
