"""Settings, read only here and only through django-environ (every name is listed in .env.example).

Defaults serve a local run (SQLite under var/, DEBUG on, console email). DJANGO_ENV=production
removes every default for secrets and turns on the deploy-time security settings.
"""
import os
import re
from datetime import timedelta
from pathlib import Path

import environ
from django.core.exceptions import ImproperlyConfigured

BASE_DIR = Path(__file__).resolve().parent.parent.parent
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
    "corsheaders",
    "billing_console",
    "licensing",
    "deployments",
    "dunning",
    "billing_console.analytics",
]

MIDDLEWARE = [
    "billing_console.ops.logging.RequestIdMiddleware",
    # Answers CORS preflights itself and adds the headers, on CORS_URLS_REGEX's paths only.
    "corsheaders.middleware.CorsMiddleware",
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

if PRODUCTION:
    # Static files from the app itself (gunicorn): compressed, hashed, cached for a year (see STORAGES).
    # Locally, runserver serves them; in tests there is no STATIC_ROOT to serve.
    MIDDLEWARE.insert(MIDDLEWARE.index("django.middleware.security.SecurityMiddleware") + 1,
                      "whitenoise.middleware.WhiteNoiseMiddleware")

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
                "billing_console.portal.views.support_contact",
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
    # Production: collectstatic writes hashed, gzip/brotli-compressed copies that WhiteNoise serves with
    # far-future cache headers. Locally and in tests the files are served as they are.
    "staticfiles": {"BACKEND": "whitenoise.storage.CompressedManifestStaticFilesStorage" if PRODUCTION
                    else "django.contrib.staticfiles.storage.StaticFilesStorage"},
}
# A template naming a file collectstatic did not see renders the plain name instead of a 500 page.
WHITENOISE_MANIFEST_STRICT = False

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
# The support inbox: Reply-To of the emails customers get, and the contact shown on their pages.
SUPPORT_EMAIL = env.str("SUPPORT_EMAIL", default="")
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
# Which events are mirrored into dj-stripe's tables: type prefixes, "all" or "none". The mirror is built from
# each event's payload (no re-read) by its own task after the event is applied, so it never slows or
# blocks the console (billing_console.stripe.mirror). Default: every billing type the console receives.
# setup_webhook_endpoint subscribes the endpoint to the selected types (stored and ignored by the console).
_MIRROR_DEFAULT = ["customer", "invoice", "invoiceitem", "price", "product", "payment_method", "charge", "refund",
                  "coupon"]
_sync = [t.strip() for t in env.list("STRIPE_DJSTRIPE_SYNC", default=[]) if t.strip()] or _MIRROR_DEFAULT
STRIPE_DJSTRIPE_SYNC = (["*"] if any(t.lower() in ("all", "*", "true") for t in _sync)
                        else [] if any(t.lower() in ("none", "false") for t in _sync) else _sync)
# A paused subscription (status "paused" after a trial without a card, or pause_collection set): whether
# the customer keeps the product meanwhile. Off: a pause stops access until it is resumed.
PAUSED_SUBSCRIPTION_ENTITLED = env.bool("PAUSED_SUBSCRIPTION_ENTITLED", default=False)
# Whether an open dispute (chargeback) takes access away until it is closed (won or lost): the entitlement
# selector answers DISPUTED and the customer is told why. Off: support is alerted and the customer page is
# flagged; the customer sees nothing of it and access is unchanged.
DISPUTE_LOCKS_ACCESS = env.bool("DISPUTE_LOCKS_ACCESS", default=False)
# Where Stripe sends the buyer after Checkout and the Customer Portal ({CHECKOUT_SESSION_ID} is filled by Stripe).
BILLING_SUCCESS_URL = env.str("BILLING_SUCCESS_URL", default="") or f"{SITE_URL}/checkout/success?session_id={{CHECKOUT_SESSION_ID}}"
BILLING_CANCEL_URL = env.str("BILLING_CANCEL_URL", default="") or f"{SITE_URL}/checkout/cancel"
BILLING_RETURN_URL = env.str("BILLING_RETURN_URL", default="") or f"{SITE_URL}/"
# Sales on (default) or off. Off: the pricing page says sales are paused and POST /api/billing/checkout answers
# 503 CHECKOUT_CLOSED, whatever the admin's checkout switch says (the switch can close sales but not reopen them).
CHECKOUT_ENABLED = env.bool("CHECKOUT_ENABLED", default=True)
# Origins of a separate front end that may call the checkout and portal APIs from the browser (CORS), comma
# separated, each scheme://host[:port] (https://www.example.com). Empty: no cross-origin call is allowed.
ALLOWED_ORIGINS = [o.strip().rstrip("/") for o in env.list("ALLOWED_ORIGINS", default=[]) if o.strip()]
for _origin in ALLOWED_ORIGINS:
    if _origin == "*" or not re.fullmatch(r"https?://[^/\s*]+", _origin):
        raise ImproperlyConfigured(f"ALLOWED_ORIGINS: {_origin!r} is not an origin like https://www.example.com.")
CORS_ALLOWED_ORIGINS = ALLOWED_ORIGINS
# Only the two browser-facing billing APIs; the webhook, the licence API and the pages never answer CORS.
CORS_URLS_REGEX = r"^/api/billing/(checkout|portal)$"
CORS_ALLOW_METHODS = ["POST", "OPTIONS"]
# content-type: the APIs take application/json only (a preflighted request); authorization: device tokens.
CORS_ALLOW_HEADERS = ["accept", "content-type", "authorization"]
CORS_ALLOW_CREDENTIALS = False
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
        # A metered (tiered) price billed in arrears beside the flat one, and the USAGE_METERS key it bills.
        "usage_price_id": env.str("STRIPE_PRICE_PRO_USAGE", default=""),
        "usage_meter": env.str("PLAN_PRO_USAGE_METER", default=""),
        "max_devices": env.int("PLAN_PRO_MAX_DEVICES", default=3),
        "offline_grace_days": env.int("PLAN_PRO_OFFLINE_GRACE_DAYS", default=7),
        "managed_deployment": True,
        # Managed deployments one subscription may hold (the service enforces it under a customer row lock).
        "deployments": env.int("PLAN_PRO_DEPLOYMENTS", default=1),
    },
    "team": {
        "name": "Team",
        "price_id": env.str("STRIPE_PRICE_TEAM", default=""),
        # A metered (tiered) price billed in arrears beside the flat one, and the USAGE_METERS key it bills.
        "usage_price_id": env.str("STRIPE_PRICE_TEAM_USAGE", default=""),
        "usage_meter": env.str("PLAN_TEAM_USAGE_METER", default=""),
        "max_devices": env.int("PLAN_TEAM_MAX_DEVICES", default=10),
        "offline_grace_days": env.int("PLAN_TEAM_OFFLINE_GRACE_DAYS", default=14),
        "managed_deployment": True,
        "deployments": env.int("PLAN_TEAM_DEPLOYMENTS", default=1),
    },
}

# --- Usage billing -------------------------------------------------------------------------
# Bearer secret the product's backend sends to POST /api/billing/usage (constant-time compare); unset: 503.
USAGE_API_SECRET = env.str("USAGE_API_SECRET", default="")


def _usage_meters(raw: str) -> dict[str, dict]:
    """USAGE_METERS: a comma list `key:formula` (api_calls:sum,exports:count), or a JSON object
    {"key": {"event_name": ..., "formula": ..., "display_name": ...}}. The key is what the API takes as
    `meter`; the Stripe meter's event_name defaults to the key. sum adds the quantities, count counts the
    events; the console aggregates either and sends totals, so the Stripe meter always sums."""
    import json

    raw = (raw or "").strip()
    if not raw:
        return {}
    items = json.loads(raw) if raw.startswith("{") else {
        part.split(":")[0].strip(): {"formula": (part.split(":") + ["sum"])[1].strip() or "sum"}
        for part in raw.split(",") if part.strip()}
    meters = {}
    for key, spec in items.items():
        spec = dict(spec or {})
        formula = spec.get("formula", "sum")
        if formula not in ("sum", "count"):
            raise ValueError(f"USAGE_METERS: meter {key!r} has formula {formula!r}; use sum or count.")
        meters[key] = {"event_name": spec.get("event_name") or key, "formula": formula,
                       "display_name": spec.get("display_name") or key.replace("_", " ").capitalize()}
    return meters


USAGE_METERS = _usage_meters(env.str("USAGE_METERS", default=""))
# Events per request and body size (413 past it); requests per window per client address (429 past it).
USAGE_MAX_EVENTS_PER_REQUEST = env.int("USAGE_MAX_EVENTS_PER_REQUEST", default=1000)
USAGE_MAX_BODY_BYTES = env.int("USAGE_MAX_BODY_BYTES", default=512 * 1024)
USAGE_RATE_LIMIT_WINDOW_SECONDS = env.int("USAGE_RATE_LIMIT_WINDOW_SECONDS", default=60)
USAGE_RATE_LIMIT_PER_CLIENT = env.int("USAGE_RATE_LIMIT_PER_CLIENT", default=6000)
# Reporting: cron expression of the report run, width of a window (seconds), reports sent per batch,
# retries of a transient error (doubling from the base, capped), and how long a send may hold a report.
USAGE_REPORT_SCHEDULE = env.str("USAGE_REPORT_SCHEDULE", default="* * * * *")
USAGE_REPORT_WINDOW_SECONDS = env.int("USAGE_REPORT_WINDOW_SECONDS", default=60)
USAGE_REPORT_BATCH_SIZE = env.int("USAGE_REPORT_BATCH_SIZE", default=500)
USAGE_REPORT_MAX_ATTEMPTS = env.int("USAGE_REPORT_MAX_ATTEMPTS", default=8)
USAGE_REPORT_RETRY_BASE_SECONDS = env.int("USAGE_REPORT_RETRY_BASE_SECONDS", default=60)
USAGE_REPORT_RETRY_MAX_SECONDS = env.int("USAGE_REPORT_RETRY_MAX_SECONDS", default=3600)
USAGE_REPORT_LEASE_SECONDS = env.int("USAGE_REPORT_LEASE_SECONDS", default=300)
