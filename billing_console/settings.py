"""Settings, read only here and only through django-environ (every name is listed in .env.example).

Defaults serve a local run (SQLite under var/, DEBUG on, console email). DJANGO_ENV=production
removes every default for secrets and turns on the deploy-time security settings.
"""
import os
from datetime import timedelta
from pathlib import Path

import environ
from django.core.exceptions import ImproperlyConfigured

BASE_DIR = Path(__file__).resolve().parent.parent
VAR_DIR = BASE_DIR / "var"


def _env_file(path) -> dict[str, str]:
    """The KEY=value lines of an env file, parsed as django-environ parses .env ({} when absent)."""
    class _Parsed(environ.Env):
        ENVIRON: dict[str, str] = {}

    _Parsed.read_env(path, overwrite=True)
    return _Parsed.ENVIRON


def _sandbox_values(sandbox: dict[str, str], environment, dotenv: dict[str, str]) -> dict[str, str]:
    """What the sandbox file (written by `make run` in sandbox mode) adds to the environment.

    All or nothing: a Stripe key set in the environment or .env means real services, and mixing them
    with the sandbox's URLs would send a real key to a stand-in. Otherwise each value the environment
    does not set (an empty value counts as unset) comes from the file, ahead of .env, so a .env copied
    from .env.example does not turn the demo's mail inbox back into console mail.
    """
    if environment.get("STRIPE_SECRET_KEY") or dotenv.get("STRIPE_SECRET_KEY"):
        return {}
    return {key: value for key, value in sandbox.items() if not environment.get(key)}


env = environ.Env()
_dotenv = _env_file(BASE_DIR / ".env")
# The sandbox's settings file (relative to the checkout); empty: none is read. Never read in production,
# nor under pytest (PYTEST_VERSION is set by pytest and inherited by the consoles tests start): tests
# configure themselves.
SANDBOX_ENV_FILE = env.str("SANDBOX_ENV_FILE", default=_dotenv.get("SANDBOX_ENV_FILE", "var/sandbox.env"))
SANDBOX_ENV_LOADED = False
if (SANDBOX_ENV_FILE and "PYTEST_VERSION" not in os.environ
        and env.str("DJANGO_ENV", default=_dotenv.get("DJANGO_ENV", "")) != "production"
        and (BASE_DIR / SANDBOX_ENV_FILE).is_file()):
    _sandbox = _sandbox_values(_env_file(BASE_DIR / SANDBOX_ENV_FILE), os.environ, _dotenv)
    os.environ.update(_sandbox)
    SANDBOX_ENV_LOADED = bool(_sandbox)

# A .env file beside manage.py is read when present; real environment variables win.
environ.Env.read_env(BASE_DIR / ".env", overwrite=False)

DJANGO_ENV = env.str("DJANGO_ENV", default="development")
PRODUCTION = DJANGO_ENV == "production"


def _secret(name: str, default: str = "") -> str:
    """A secret has no default in production: a missing one fails at start, not at first use."""
    if PRODUCTION:
        return env.str(name)
    return env.str(name, default=default)


# An empty value in .env counts as unset (copying .env.example as is must work).
SECRET_KEY = env.str("SECRET_KEY") if PRODUCTION else (
    env.str("SECRET_KEY", default="") or "dev-only-insecure-key-change-me-0123456789abcdefghijklmnop")
DEBUG = False if PRODUCTION else env.bool("DEBUG", default=True)
ALLOWED_HOSTS = env.list("ALLOWED_HOSTS", default=[] if PRODUCTION else ["localhost", "127.0.0.1", "[::1]", "testserver"])
CSRF_TRUSTED_ORIGINS = env.list("CSRF_TRUSTED_ORIGINS", default=[])
# The public base URL used in emails (manage links) and Stripe redirect URLs.
SITE_URL = env.str("SITE_URL", default="http://127.0.0.1:8000").rstrip("/")
# The product's name on the customer pages (pricing, manage, recover).
SITE_NAME = env.str("SITE_NAME", default="Billing Console")

INSTALLED_APPS = [
    "django.contrib.admin",
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "django.contrib.staticfiles",
    "axes",  # before billing_console: the console's admin re-registers axes' lockout list with an unlock action
    "django_otp",
    "django_otp.plugins.otp_totp",
    "django_otp.plugins.otp_static",
    "djstripe",
    "django_q",
    "anymail",
    "billing_console",
    "licensing",
    "deployments",
    "dunning",
    "billing_console.analytics",
]

MIDDLEWARE = [
    "billing_console.ops.logging.RequestIdMiddleware",
    "django.middleware.security.SecurityMiddleware",
    # The licence API's JSON views answer here, past the cookie/session/CSRF middleware below.
    "licensing.middleware.LicenseApiMiddleware",
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "django_otp.middleware.OTPMiddleware",
    "billing_console.admin.staff_auth.StaffTwoFactorMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
    "axes.middleware.AxesMiddleware",
]
# django-axes checks every login against its lockouts before the password is even looked at.
AUTHENTICATION_BACKENDS = ["axes.backends.AxesStandaloneBackend", "django.contrib.auth.backends.ModelBackend"]

ROOT_URLCONF = "billing_console.urls"
WSGI_APPLICATION = "billing_console.wsgi.application"

TEMPLATES = [
    {
        "BACKEND": "django.template.backends.django.DjangoTemplates",
        "DIRS": [BASE_DIR / "templates"],
        "APP_DIRS": True,
        "OPTIONS": {
            "context_processors": [
                "django.template.context_processors.request",
                "django.contrib.auth.context_processors.auth",
                "django.contrib.messages.context_processors.messages",
            ],
        },
    },
]

# --- Database -------------------------------------------------------------------------------
# SQLite under var/ by default; DATABASE_URL (postgres://...) switches to PostgreSQL.
DATABASES = {
    "default": env.db_url_config(env.str("DATABASE_URL", default="") or f"sqlite:///{VAR_DIR / 'console.sqlite3'}"),
}
if DATABASES["default"]["ENGINE"].endswith("sqlite3"):
    VAR_DIR.mkdir(exist_ok=True)
    # Several processes (web, qcluster workers) share the file. WAL lets readers run beside the writer;
    # IMMEDIATE takes the write lock at BEGIN, so a transaction waits for it (timeout) instead of
    # failing with "database is locked" when it tries to upgrade a read lock mid-way.
    DATABASES["default"].setdefault("OPTIONS", {}).update({
        "timeout": 30,
        "transaction_mode": "IMMEDIATE",
        "init_command": "PRAGMA journal_mode=WAL; PRAGMA synchronous=NORMAL;",
    })
else:
    DATABASES["default"].setdefault("CONN_MAX_AGE", env.int("DB_CONN_MAX_AGE", default=60))
    DATABASES["default"].setdefault("CONN_HEALTH_CHECKS", True)
DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"

# --- Cache (rate limits) --------------------------------------------------------------------
REDIS_URL = env.str("REDIS_URL", default="")
if REDIS_URL:
    CACHES = {"default": {"BACKEND": "django.core.cache.backends.redis.RedisCache", "LOCATION": REDIS_URL}}
else:
    # Database cache: shared by every process, so rate limits hold across workers without Redis.
    CACHES = {"default": {"BACKEND": "django.core.cache.backends.db.DatabaseCache", "LOCATION": "bc_cache"}}

AUTH_PASSWORD_VALIDATORS = [
    {"NAME": "django.contrib.auth.password_validation.UserAttributeSimilarityValidator"},
    {"NAME": "django.contrib.auth.password_validation.MinimumLengthValidator"},
    {"NAME": "django.contrib.auth.password_validation.CommonPasswordValidator"},
    {"NAME": "django.contrib.auth.password_validation.NumericPasswordValidator"},
]

LANGUAGE_CODE = "en-us"
TIME_ZONE = "UTC"
USE_I18N = True
USE_TZ = True

STATIC_URL = "static/"
STATIC_ROOT = env.str("STATIC_ROOT", default=str(VAR_DIR / "static"))
MEDIA_ROOT = env.str("MEDIA_ROOT", default=str(VAR_DIR / "media"))
MEDIA_URL = "media/"
STORAGES = {
    # Invoice PDFs and backups go through Django's storage API: a folder by default, any backend by setting.
    "default": {"BACKEND": env.str("STORAGE_BACKEND", default="django.core.files.storage.FileSystemStorage")},
    "staticfiles": {"BACKEND": "django.contrib.staticfiles.storage.StaticFilesStorage"},
}

# --- Email ----------------------------------------------------------------------------------
# EMAIL_URL: consolemail:// (default), smtp://user:pass@host:port, smtp+tls://...
# EMAIL_PROVIDER=mailgun|resend switches to django-anymail with ANYMAIL_API_KEY.
EMAIL_PROVIDER = env.str("EMAIL_PROVIDER", default="")
_email = env.email_url_config(env.str("EMAIL_URL", default="") or "consolemail://")
EMAIL_BACKEND = _email["EMAIL_BACKEND"]
EMAIL_HOST = _email.get("EMAIL_HOST", "")
EMAIL_PORT = _email.get("EMAIL_PORT") or 25
EMAIL_HOST_USER = _email.get("EMAIL_HOST_USER", "")
EMAIL_HOST_PASSWORD = _email.get("EMAIL_HOST_PASSWORD", "")
EMAIL_USE_TLS = _email.get("EMAIL_USE_TLS", False)
EMAIL_USE_SSL = _email.get("EMAIL_USE_SSL", False)
EMAIL_TIMEOUT = env.int("EMAIL_TIMEOUT", default=15)
ANYMAIL = {}
if EMAIL_PROVIDER == "mailgun":
    EMAIL_BACKEND = "anymail.backends.mailgun.EmailBackend"
    ANYMAIL = {"MAILGUN_API_KEY": _secret("ANYMAIL_API_KEY"), "MAILGUN_SENDER_DOMAIN": env.str("MAILGUN_SENDER_DOMAIN", default="")}
elif EMAIL_PROVIDER == "resend":
    EMAIL_BACKEND = "anymail.backends.resend.EmailBackend"
    ANYMAIL = {"RESEND_API_KEY": _secret("ANYMAIL_API_KEY")}
DEFAULT_FROM_EMAIL = env.str("DEFAULT_FROM_EMAIL", default="Billing Console <billing@localhost>")
SERVER_EMAIL = DEFAULT_FROM_EMAIL
# Operators' address for drift reports and the daily health report.
OPS_EMAIL = env.str("OPS_EMAIL", default="")
# Every invoice email is blind-copied here (bookkeeping).
BILLING_BCC_ADDRESS = env.str("BILLING_BCC_ADDRESS", default="")
# Invoice delivery (PDF + email): attempts before it shows as failed, backoff between them, and how long
# one worker holds an invoice it is delivering before another may take it over.
INVOICE_DELIVERY_MAX_ATTEMPTS = env.int("INVOICE_DELIVERY_MAX_ATTEMPTS", default=5)
INVOICE_DELIVERY_RETRY_BASE_SECONDS = env.int("INVOICE_DELIVERY_RETRY_BASE_SECONDS", default=120)
INVOICE_DELIVERY_RETRY_MAX_SECONDS = env.int("INVOICE_DELIVERY_RETRY_MAX_SECONDS", default=6 * 3600)
INVOICE_DELIVERY_LEASE_SECONDS = env.int("INVOICE_DELIVERY_LEASE_SECONDS", default=600)

# --- Stripe and dj-stripe -------------------------------------------------------------------
STRIPE_LIVE_MODE = env.bool("STRIPE_LIVE_MODE", default=False)
STRIPE_SECRET_KEY = _secret("STRIPE_SECRET_KEY")
STRIPE_LIVE_SECRET_KEY = STRIPE_SECRET_KEY if STRIPE_LIVE_MODE else ""
STRIPE_TEST_SECRET_KEY = "" if STRIPE_LIVE_MODE else STRIPE_SECRET_KEY
STRIPE_WEBHOOK_SECRET = _secret("STRIPE_WEBHOOK_SECRET")
# Base URL of the Stripe API: unset means the real one; the sandbox sets http://127.0.0.1:12111.
# dj-stripe applies it only when the setting exists, so it is defined only when given.
if env.str("STRIPE_API_HOST", default=""):
    STRIPE_API_HOST = env.str("STRIPE_API_HOST")
# The API version the console is written and tested against (objects are read in this shape);
# pinned to dj-stripe 2.11's own default so its sync reads the shapes it was built for.
STRIPE_API_VERSION = env.str("STRIPE_API_VERSION", default="2026-05-27.dahlia")
# Seconds of clock skew tolerated on a webhook signature timestamp (Stripe's default is 300).
STRIPE_WEBHOOK_TOLERANCE = env.int("STRIPE_WEBHOOK_TOLERANCE", default=300)
STRIPE_TIMEOUT_SECONDS = env.float("STRIPE_TIMEOUT_SECONDS", default=20.0)
STRIPE_MAX_RETRIES = env.int("STRIPE_MAX_RETRIES", default=2)
# Largest webhook body accepted; Stripe's events are a few KB, anything far bigger is refused early (413).
STRIPE_WEBHOOK_MAX_BYTES = env.int("STRIPE_WEBHOOK_MAX_BYTES", default=1024 * 1024)
# A failed event is retried by the console with backoff this many times, then waits for support (replay).
STRIPE_EVENT_MAX_ATTEMPTS = env.int("STRIPE_EVENT_MAX_ATTEMPTS", default=8)
# A claimed event not finished after this many seconds is taken as crashed and claimed again.
STRIPE_EVENT_PROCESSING_LEASE_SECONDS = env.int("STRIPE_EVENT_PROCESSING_LEASE_SECONDS", default=600)
# A stored event still unprocessed after this many seconds (its enqueue was lost) is picked up by the retry cron.
STRIPE_EVENT_ENQUEUE_GRACE_SECONDS = env.int("STRIPE_EVENT_ENQUEUE_GRACE_SECONDS", default=120)
# Events a worker claims and applies per round (each in its own transaction): larger batches spread
# django-q2's per-task cost over more events, smaller ones let more workers share a short burst.
STRIPE_EVENT_BATCH_SIZE = env.int("STRIPE_EVENT_BATCH_SIZE", default=50)
# Applied events older than this many days (Stripe's time) are deleted by the nightly stripe_events_prune
# cron (manage.py prune_webhook_events); 0 keeps them forever. Unapplied and failed events are always kept.
STRIPE_EVENT_RETENTION_DAYS = env.int("STRIPE_EVENT_RETENTION_DAYS", default=90)
# Which events are mirrored into dj-stripe's tables (its sync, which re-reads the object from Stripe)
# before the console's receivers run: type prefixes, "all" or "none". The console keeps its own state,
# and reads dj-stripe's mirror only for products and prices (the pricing page); mirroring everything
# costs a Stripe round trip and ~20 SQL statements per event.
_sync = [t.strip() for t in env.list("STRIPE_DJSTRIPE_SYNC", default=[]) if t.strip()] or ["product", "price", "plan"]
STRIPE_DJSTRIPE_SYNC = (["*"] if any(t.lower() in ("all", "*", "true") for t in _sync)
                        else [] if any(t.lower() in ("none", "false") for t in _sync) else _sync)
# Where Stripe sends the buyer after Checkout and the Customer Portal ({CHECKOUT_SESSION_ID} is filled by Stripe).
BILLING_SUCCESS_URL = env.str("BILLING_SUCCESS_URL", default="") or f"{SITE_URL}/checkout/success?session_id={{CHECKOUT_SESSION_ID}}"
BILLING_CANCEL_URL = env.str("BILLING_CANCEL_URL", default="") or f"{SITE_URL}/checkout/cancel"
BILLING_RETURN_URL = env.str("BILLING_RETURN_URL", default="") or f"{SITE_URL}/"
# The page an abandoned checkout's follow-up email links back to.
PRICING_URL = env.str("PRICING_URL", default="") or f"{SITE_URL}/"
DJSTRIPE_FOREIGN_KEY_TO_FIELD = "id"
DJSTRIPE_USE_NATIVE_JSONFIELD = True
DJSTRIPE_WEBHOOK_VALIDATION = "verify_signature"
DJSTRIPE_WEBHOOK_SECRET = STRIPE_WEBHOOK_SECRET
DJSTRIPE_WEBHOOK_TOLERANCE = STRIPE_WEBHOOK_TOLERANCE

# Plans sold, configured by Stripe price id. A plan without a price id is shown as "coming soon".
PLANS = {
    "pro": {
        "name": "Pro",
        "price_id": env.str("STRIPE_PRICE_PRO", default=""),
        "max_devices": env.int("PLAN_PRO_MAX_DEVICES", default=3),
        "offline_grace_days": env.int("PLAN_PRO_OFFLINE_GRACE_DAYS", default=7),
        "managed_deployment": True,
    },
    "team": {
        "name": "Team",
        "price_id": env.str("STRIPE_PRICE_TEAM", default=""),
        "max_devices": env.int("PLAN_TEAM_MAX_DEVICES", default=10),
        "offline_grace_days": env.int("PLAN_TEAM_OFFLINE_GRACE_DAYS", default=14),
        "managed_deployment": True,
    },
}

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

# --- Operations -----------------------------------------------------------------------------
# Bearer secret for /api/ops/summary (compared in constant time); unset answers 503.
OPS_SECRET = _secret("OPS_SECRET")
MANAGE_LINK_MAX_AGE_DAYS = env.int("MANAGE_LINK_MAX_AGE_DAYS", default=30)
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
# Daily backups kept in storage under backups/ (older ones are deleted after each export).
BACKUP_RETENTION = env.int("BACKUP_RETENTION", default=14)

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
            "filters": ["context", "redact"],
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
