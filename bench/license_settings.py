"""Settings for bench/bench_license_status.py only: the console's settings, plus a URLconf with a
bare JSON view to compare against, and tables created without running migrations (dj-stripe's take
minutes). Never used by the console itself."""
from billing_console.settings import *  # noqa: F401,F403
from billing_console.settings import INSTALLED_APPS

ROOT_URLCONF = "bench.license_urls"
DEBUG = False
MIGRATION_MODULES = {label.rpartition(".")[2]: None for label in INSTALLED_APPS}
EMAIL_BACKEND = "django.core.mail.backends.dummy.EmailBackend"
