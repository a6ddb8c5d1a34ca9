"""Bench-only settings: the console's own, with the bench URLconf (never used in production)."""
from billing_console.settings import *  # noqa: F401,F403

ROOT_URLCONF = "bench.webhook_urls"
