"""A stateful Stripe emulator for tests and the offline demo (see README.md in this folder)."""
from .emulator import API_VERSION, SEED_PRICES, StripeEmulator
from .webhooks import sign_payload

__all__ = ["API_VERSION", "SEED_PRICES", "StripeEmulator", "sign_payload"]
