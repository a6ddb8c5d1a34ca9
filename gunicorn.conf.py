"""gunicorn's configuration: `gunicorn -c gunicorn.conf.py billing_console.wsgi`.

Every value comes from the console's settings (billing_console/settings/, read through django-environ
like every other setting), so .env and the environment configure the web server too.
"""
import os

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "billing_console.settings")

from billing_console import settings as _settings  # noqa: E402

wsgi_app = "billing_console.wsgi:application"
bind = _settings.GUNICORN_BIND
workers = _settings.GUNICORN_WORKERS
threads = _settings.GUNICORN_THREADS
timeout = _settings.GUNICORN_TIMEOUT
forwarded_allow_ips = _settings.GUNICORN_FORWARDED_ALLOW_IPS
# Recycle workers now and then (jittered, so they do not all restart together): bounds slow leaks.
max_requests = 2000
max_requests_jitter = 200
# The app logs each request itself (with its request id); gunicorn's own lines go to stderr.
accesslog = None
errorlog = "-"
# Loading the app once in the master makes workers start fast; the database connections are opened
# per worker after the fork.
preload_app = True
