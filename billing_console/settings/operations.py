"""Settings of the feature apps and of operations (licensing, deployments, dunning, health, logging, staff
login, error reporting, security), read through django-environ like base.py's."""
import os
from datetime import timedelta

from django.core.exceptions import ImproperlyConfigured

from billing_console.settings.base import DJANGO_ENV, PRODUCTION, REDIS_URL, SITE_NAME, STRIPE_LIVE_MODE, _secret, env

# --- Vault (AES-256-GCM for customers' cloud tokens and recovery emails) ---------------------
CLOUD_MASTER_KEY = _secret("CLOUD_MASTER_KEY")
# Earlier master keys, comma-separated: still decrypt while rotate_master_key re-encrypts.
CLOUD_MASTER_KEY_PREVIOUS = env.list("CLOUD_MASTER_KEY_PREVIOUS", default=[])

# --- Licensing --------------------------------------------------------------------------------
# Ed25519 private key (PEM or base64 raw 32 bytes) that signs device tokens and licence blobs.
LICENSE_SIGNING_KEY = _secret("LICENSE_SIGNING_KEY")
# Earlier public keys still published for verification during a rotation (comma-separated "kid:base64").
LICENSE_VERIFY_KEYS_PREVIOUS = env.list("LICENSE_VERIFY_KEYS_PREVIOUS", default=[])
# Licence API rate limits: requests per window per licence key (or device token's licence) and per client address.
LICENSE_RATE_LIMIT_WINDOW_SECONDS = env.int("LICENSE_RATE_LIMIT_WINDOW_SECONDS", default=60)
LICENSE_RATE_LIMIT_PER_KEY = env.int("LICENSE_RATE_LIMIT_PER_KEY", default=60)
LICENSE_RATE_LIMIT_PER_ADDRESS = env.int("LICENSE_RATE_LIMIT_PER_ADDRESS", default=300)
# The status call's query as a server-side prepared statement on PostgreSQL (6x less database CPU).
# Set false behind a transaction-pooling PgBouncer older than 1.21, which loses prepared statements.
LICENSE_STATUS_PREPARED_STATEMENT = env.bool("LICENSE_STATUS_PREPARED_STATEMENT", default=True)

# --- Deployments ------------------------------------------------------------------------------
HELM_BUNDLE_MANIFEST_URL = env.str("HELM_BUNDLE_MANIFEST_URL", default="")
# Plain-http manifests and bundles (the sandbox's bundle host); otherwise https only (or a local file manifest).
DEPLOY_ALLOW_HTTP_BUNDLES = env.bool("DEPLOY_ALLOW_HTTP_BUNDLES", default=False)
CLOUDFLARE_API_BASE = env.str("CLOUDFLARE_API_BASE", default="") or "https://api.cloudflare.com/client/v4"
CLOUDFLARE_TIMEOUT_SECONDS = env.float("CLOUDFLARE_TIMEOUT_SECONDS", default=30.0)
# Pushes in flight at once during a run (threads doing HTTP; database writes stay on one connection).
DEPLOY_PUSH_CONCURRENCY = env.int("DEPLOY_PUSH_CONCURRENCY", default=8)
# Consecutive 401/403 answers after which a deployment is stopped until its token is rotated or verified.
DEPLOY_MAX_AUTH_FAILURES = env.int("DEPLOY_MAX_AUTH_FAILURES", default=3)
# A 429 whose Retry-After is at most this many seconds is waited out and retried within the run;
# a longer one fails the push and the deployment is skipped until Retry-After has passed.
DEPLOY_RETRY_AFTER_MAX_SECONDS = env.int("DEPLOY_RETRY_AFTER_MAX_SECONDS", default=10)
# A publish still queued/building/deploying after this long is taken as crashed and marked failed.
DEPLOY_PUBLISH_STALE_MINUTES = env.int("DEPLOY_PUBLISH_STALE_MINUTES", default=30)
DEPLOY_BUNDLE_MAX_BYTES = env.int("DEPLOY_BUNDLE_MAX_BYTES", default=10 * 1024 * 1024)
DEPLOY_COMPATIBILITY_DATE = env.str("DEPLOY_COMPATIBILITY_DATE", default="2025-01-01")

# --- WhatsApp (Evolution API) -------------------------------------------------------------
EVOLUTION_API_URL = env.str("EVOLUTION_API_URL", default="")
EVOLUTION_API_KEY = env.str("EVOLUTION_API_KEY", default="")
EVOLUTION_INSTANCE = env.str("EVOLUTION_INSTANCE", default="billing")
EVOLUTION_TIMEOUT_SECONDS = env.float("EVOLUTION_TIMEOUT_SECONDS", default=10.0)
# Country (ISO 3166 alpha-2, e.g. BR) a phone typed without +country code is read in; empty: a code is required.
PHONE_DEFAULT_REGION = env.str("PHONE_DEFAULT_REGION", default="")

# --- Dunning --------------------------------------------------------------------------------
# Attempts per step before it is marked failed for support; the wait doubles from the base, capped.
DUNNING_MAX_ATTEMPTS = env.int("DUNNING_MAX_ATTEMPTS", default=5)
DUNNING_RETRY_BASE_SECONDS = env.int("DUNNING_RETRY_BASE_SECONDS", default=300)
DUNNING_RETRY_MAX_SECONDS = env.int("DUNNING_RETRY_MAX_SECONDS", default=6 * 3600)
# Steps claimed and recorded per database round; a run's query count grows with batches, not cases.
DUNNING_BATCH_SIZE = env.int("DUNNING_BATCH_SIZE", default=200)
# WhatsApp messages per minute per Evolution instance, shared by every worker (through the cache).
DUNNING_WHATSAPP_PER_MINUTE = env.int("DUNNING_WHATSAPP_PER_MINUTE", default=20)
# A step still "sending" after this long lost its worker mid-send: failed for support, never resent blindly.
DUNNING_SENDING_STALE_MINUTES = env.int("DUNNING_SENDING_STALE_MINUTES", default=30)
# Whose "now" dunning's due steps and locks follow: "wall" (always in production), or "stripe_sandbox": the
# Stripe sandbox's clock (GET {STRIPE_API_HOST}/_sandbox/clock), so advancing it makes the next step fall due.
# The sandbox's env file sets it; it is refused with a live key or without STRIPE_API_HOST.
DUNNING_CLOCK = env.str("DUNNING_CLOCK", default="wall").strip().lower()
if DUNNING_CLOCK not in ("wall", "stripe_sandbox"):
    raise ImproperlyConfigured(f"DUNNING_CLOCK is {DUNNING_CLOCK!r}: use wall or stripe_sandbox.")
if DUNNING_CLOCK == "stripe_sandbox" and (STRIPE_LIVE_MODE or not env.str("STRIPE_API_HOST", default="")):
    raise ImproperlyConfigured("DUNNING_CLOCK=stripe_sandbox follows the Stripe sandbox's clock: it needs "
                               "STRIPE_API_HOST and no live mode.")

# --- Operations -----------------------------------------------------------------------------
# Bearer secret for /api/ops/summary (compared in constant time); unset answers 503.
OPS_SECRET = _secret("OPS_SECRET")
# Bearer token for /metrics (Prometheus); empty: OPS_SECRET is used; neither set: /metrics answers 503.
METRICS_TOKEN = env.str("METRICS_TOKEN", default="")
MANAGE_LINK_MAX_AGE_DAYS = env.int("MANAGE_LINK_MAX_AGE_DAYS", default=30)
# Manage-link emails (after checkout, /recover, support): tries, doubling wait between them, and the claim's lease.
MANAGE_LINK_DELIVERY_MAX_ATTEMPTS = env.int("MANAGE_LINK_DELIVERY_MAX_ATTEMPTS", default=5)
MANAGE_LINK_DELIVERY_RETRY_BASE_SECONDS = env.int("MANAGE_LINK_DELIVERY_RETRY_BASE_SECONDS", default=120)
MANAGE_LINK_DELIVERY_RETRY_MAX_SECONDS = env.int("MANAGE_LINK_DELIVERY_RETRY_MAX_SECONDS", default=6 * 3600)
MANAGE_LINK_DELIVERY_LEASE_SECONDS = env.int("MANAGE_LINK_DELIVERY_LEASE_SECONDS", default=600)
# Days a customer has to rotate their Cloudflare token after notify_token_rotation; then updates pause.
TOKEN_ROTATION_DEADLINE_DAYS = env.int("TOKEN_ROTATION_DEADLINE_DAYS", default=7)
# /recover: requests per window per email address and per client address (429 past them).
RECOVER_RATE_LIMIT_WINDOW_SECONDS = env.int("RECOVER_RATE_LIMIT_WINDOW_SECONDS", default=3600)
RECOVER_RATE_LIMIT_PER_EMAIL = env.int("RECOVER_RATE_LIMIT_PER_EMAIL", default=3)
RECOVER_RATE_LIMIT_PER_CLIENT = env.int("RECOVER_RATE_LIMIT_PER_CLIENT", default=20)
# Checkout (the JSON API and the pricing form together): requests per window per client address and per
# buyer email, counted before validation (429 past them); each opens a Stripe session and may send a follow-up.
CHECKOUT_RATE_LIMIT_WINDOW_SECONDS = env.int("CHECKOUT_RATE_LIMIT_WINDOW_SECONDS", default=3600)
CHECKOUT_RATE_LIMIT_PER_CLIENT = env.int("CHECKOUT_RATE_LIMIT_PER_CLIENT", default=20)
CHECKOUT_RATE_LIMIT_PER_EMAIL = env.int("CHECKOUT_RATE_LIMIT_PER_EMAIL", default=5)
# A running cron older than this is taken as crashed, so the next start is not blocked forever.
CRON_STALE_AFTER_MINUTES = env.int("CRON_STALE_AFTER_MINUTES", default=120)
# /health?deep=1 answers 503 when the task cluster's heartbeat (the `heartbeat` cron, every minute) is older.
HEARTBEAT_STALE_SECONDS = env.int("HEARTBEAT_STALE_SECONDS", default=180)
# Alerts (cron alert_check, every 10 minutes): OPS_EMAIL gets each problem once when it starts and once
# when it ends; ALERT_WEBHOOK_URL (optional, e.g. a Slack incoming webhook) gets the same as {"text": ...}.
ALERT_WEBHOOK_URL = env.str("ALERT_WEBHOOK_URL", default="")
ALERT_WEBHOOK_TIMEOUT = env.float("ALERT_WEBHOOK_TIMEOUT", default=10.0)
# A Stripe event not applied after this many minutes is an alert.
ALERT_EVENT_WAIT_MINUTES = env.int("ALERT_EVENT_WAIT_MINUTES", default=10)
# A cron is late when it has not started since two of its slots went by, plus this slack.
ALERT_CRON_GRACE_MINUTES = env.int("ALERT_CRON_GRACE_MINUTES", default=5)
# A spike: at least this many failed pushes, or failed dunning sends, within ALERT_SPIKE_WINDOW_MINUTES.
ALERT_SPIKE_WINDOW_MINUTES = env.int("ALERT_SPIKE_WINDOW_MINUTES", default=60)
ALERT_PUSH_FAILURES = env.int("ALERT_PUSH_FAILURES", default=5)
ALERT_DUNNING_FAILURES = env.int("ALERT_DUNNING_FAILURES", default=5)
# Daily backups kept in storage under backups/ (older ones are deleted after each export).
BACKUP_RETENTION = env.int("BACKUP_RETENTION", default=14)

# --- gunicorn (read by gunicorn.conf.py) -----------------------------------------------------
# Address, worker processes and threads per worker of the web server (`gunicorn -c gunicorn.conf.py`).
GUNICORN_BIND = env.str("GUNICORN_BIND", default="127.0.0.1:8000")
# Empty (as in .env.example): 2 x cores + 1.
GUNICORN_WORKERS = int(env.str("GUNICORN_WORKERS", default="") or (os.cpu_count() or 1) * 2 + 1)
GUNICORN_THREADS = env.int("GUNICORN_THREADS", default=4)
GUNICORN_TIMEOUT = env.int("GUNICORN_TIMEOUT", default=30)
# Proxy addresses whose X-Forwarded-* headers gunicorn trusts (comma-separated; "*" behind a private LB).
GUNICORN_FORWARDED_ALLOW_IPS = env.str("GUNICORN_FORWARDED_ALLOW_IPS", default="127.0.0.1")

# --- django-q2 ------------------------------------------------------------------------------
Q_CLUSTER = {
    "name": "billing_console",
    "workers": env.int("Q_WORKERS", default=4),
    "timeout": env.int("Q_TIMEOUT", default=300),
    "retry": env.int("Q_RETRY", default=360),
    "max_attempts": 1,  # retries are the console's own (visible state, backoff), not a blind re-run
    "catch_up": False,  # a missed hourly push is done by the next one, not replayed n times
    "save_limit": 1000,
    "label": "Tasks",
    "sync": env.bool("Q_SYNC", default=False),
}
if REDIS_URL:
    Q_CLUSTER["redis"] = REDIS_URL
else:
    Q_CLUSTER["orm"] = "default"

# --- Logging --------------------------------------------------------------------------------
LOG_FORMAT = env.str("LOG_FORMAT", default="text")  # "json" for one JSON object per line
LOG_LEVEL = env.str("LOG_LEVEL", default="INFO")
LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "filters": {
        "context": {"()": "billing_console.ops.logging.ContextFilter"},
        "redact": {"()": "billing_console.ops.logging.RedactSecretsFilter"},
        "client_errors": {"()": "billing_console.ops.logging.ClientErrorTracebackFilter"},
    },
    "formatters": {
        "json": {"()": "billing_console.ops.logging.JsonFormatter"},
        "text": {"()": "billing_console.ops.logging.TextFormatter",
                 "format": "%(asctime)s %(levelname)s %(name)s [%(request_id)s %(task_id)s] %(message)s"},
    },
    "handlers": {
        "console": {
            "class": "logging.StreamHandler",
            "formatter": "json" if LOG_FORMAT == "json" else "text",
            "filters": ["context", "redact", "client_errors"],
        },
    },
    "root": {"handlers": ["console"], "level": LOG_LEVEL},
    "loggers": {
        # Django's defaults print to the console as is (paths with manage-link tokens): everything goes through
        # the redacting handler above instead (propagated to the root's, or runserver's access lines directly).
        "django": {"handlers": [], "level": "INFO", "propagate": True},
        "django.server": {"handlers": ["console"], "level": "INFO", "propagate": False},
        "django.db.backends": {"level": "INFO"},
        "stripe": {"level": "WARNING"},
        "httpx": {"level": "WARNING"},
        # django-q2 logs every enqueue and pickup at INFO; the console logs its own cron results.
        "django-q": {"level": "WARNING"},
        "weasyprint": {"level": "WARNING"},  # its INFO lines are per-render progress steps
        "fontTools": {"level": "WARNING"},
    },
}

# --- Staff login ----------------------------------------------------------------------------
# django-axes: after AXES_FAILURE_LIMIT failed logins (wrong password or wrong two-factor code) a username,
# and separately a client address, is locked out for AXES_COOLOFF_MINUTES. Lockouts show in the admin
# (Axes > Access attempts, visible to support); a superuser unlocks with the "Unlock" action.
AXES_ENABLED = env.bool("AXES_ENABLED", default=True)
AXES_FAILURE_LIMIT = env.int("AXES_FAILURE_LIMIT", default=5)
AXES_COOLOFF_TIME = timedelta(minutes=env.int("AXES_COOLOFF_MINUTES", default=15))
AXES_LOCKOUT_PARAMETERS = ["username", "ip_address"]
AXES_RESET_ON_SUCCESS = True
AXES_CLIENT_IP_CALLABLE = "billing_console.admin.staff_auth.axes_client_ip"  # honours TRUSTED_PROXY_HOPS
AXES_LOCKOUT_TEMPLATE = "admin/lockout.html"
AXES_SENSITIVE_PARAMETERS = ["password", "otp_token"]
AXES_VERBOSE = False
# Two-factor (TOTP with recovery codes, django-otp) for staff: "required" (every staff user enrols an
# authenticator app at first login before using the admin), "optional" (asked only of staff who enrolled),
# "off". Required by default in production.
STAFF_2FA = (env.str("STAFF_2FA", default="").strip().lower()
             or ("required" if PRODUCTION else "optional"))
if STAFF_2FA not in ("required", "optional", "off"):
    raise ImproperlyConfigured("STAFF_2FA must be required, optional or off.")
# The issuer the authenticator app shows beside the account.
OTP_TOTP_ISSUER = SITE_NAME

# --- Error reporting ------------------------------------------------------------------------
# SENTRY_DSN turns on sentry-sdk (errors of web requests and tasks). Every event passes through the log
# redaction first (billing_console.ops.logging.sentry_before_send); no personal data is sent by default.
SENTRY_DSN = env.str("SENTRY_DSN", default="")
SENTRY_ENVIRONMENT = env.str("SENTRY_ENVIRONMENT", default="") or DJANGO_ENV
SENTRY_TRACES_SAMPLE_RATE = env.float("SENTRY_TRACES_SAMPLE_RATE", default=0.0)
if SENTRY_DSN:
    import sentry_sdk
    from sentry_sdk.integrations.django import DjangoIntegration

    from billing_console.ops.logging import sentry_before_send

    sentry_sdk.init(dsn=SENTRY_DSN, environment=SENTRY_ENVIRONMENT, integrations=[DjangoIntegration()],
                    traces_sample_rate=SENTRY_TRACES_SAMPLE_RATE, send_default_pii=False,
                    before_send=sentry_before_send, before_send_transaction=sentry_before_send)

# --- Security -------------------------------------------------------------------------------
# Reverse proxies in front of the console that append to X-Forwarded-For (0: use the socket address).
# Rate limits key on the client address, so set this only to the real number of trusted hops.
TRUSTED_PROXY_HOPS = env.int("TRUSTED_PROXY_HOPS", default=0)
SESSION_COOKIE_HTTPONLY = True
# Admin messages can carry a reissued licence key shown once: keep them server-side, not in a cookie.
MESSAGE_STORAGE = "django.contrib.messages.storage.session.SessionStorage"
X_FRAME_OPTIONS = "DENY"
SECURE_CONTENT_TYPE_NOSNIFF = True
SECURE_REFERRER_POLICY = "same-origin"
if PRODUCTION:
    SECURE_SSL_REDIRECT = env.bool("SECURE_SSL_REDIRECT", default=True)
    SECURE_PROXY_SSL_HEADER = ("HTTP_X_FORWARDED_PROTO", "https")
    SECURE_HSTS_SECONDS = env.int("SECURE_HSTS_SECONDS", default=31536000)
    SECURE_HSTS_INCLUDE_SUBDOMAINS = True
    SECURE_HSTS_PRELOAD = True
    SESSION_COOKIE_SECURE = True
    CSRF_COOKIE_SECURE = True
    # The load balancer probes /health over plain HTTP.
    SECURE_REDIRECT_EXEMPT = [r"^health$", r"^api/cloud/health$"]
