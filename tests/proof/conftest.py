"""The proof tests reuse the Stripe side's fixtures (settings, emulator, signed delivery)."""
from tests.stripe.conftest import emulator, post_event, stripe_settings  # noqa: F401
