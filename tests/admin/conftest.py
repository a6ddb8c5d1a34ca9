"""The support console's tests use the portal's staff users and the Stripe and Cloudflare stand-ins."""
from tests.deployments.conftest import bundles, cloudflare  # noqa: F401
from tests.portal.conftest import _fast_passwords, admin_client_, manage_url, support_client, support_user  # noqa: F401
from tests.stripe.conftest import deliver, emulator, post_event, stripe_settings  # noqa: F401
