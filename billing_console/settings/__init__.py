"""The console's settings, read from the environment (and .env) through django-environ only: base.py (the
project, databases, cache, email, Stripe, usage billing) and operations.py (the feature apps and
operations). DJANGO_SETTINGS_MODULE stays "billing_console.settings"."""
from billing_console.settings.base import *  # noqa: F401,F403
from billing_console.settings.operations import *  # noqa: F401,F403
