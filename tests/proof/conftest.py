"""The proof tests reuse the Stripe side's fixtures (settings, emulator, signed delivery)."""
from tests.billing.conftest import emulator, post_event, stripe_settings  # noqa: F401
