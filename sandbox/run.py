"""Every stand-in together, for the offline demo (`python -m sandbox run`) and end-to-end tests.

    sandbox = Sandbox(data_dir=tmp_path, stripe_port=0, cloudflare_port=0, ...).start()
    sandbox.env()      # {"STRIPE_API_HOST": ..., "CLOUDFLARE_API_BASE": ..., "EMAIL_URL": ..., ...}
    sandbox.stop()
"""
from __future__ import annotations

import base64
import os
import secrets
import string
from pathlib import Path

from .bundles import BundleHost
from .cloudflare import FakeCloudflare
from .smtp import MailCatcher
from .whatsapp import FakeEvolution

DEMO_ACCOUNT_ID = "0c1a55e7d3b54f0e9c8a7b6d5e4f3a21"  # 32 hex, like a Cloudflare account id
DEMO_TOKEN = "cf_demo_token_7Qm2xK9vR4tLw8Hn3Zp6"
DEMO_WORKER_NAME = "demo-worker"  # any name the deploy form accepts; this one is in the banner and README
# Tokens that fail the way customers' tokens do, to try the console's error paths by hand.
DEMO_FAILING_TOKENS = {
    "cf_demo_token_expired_0000000000": {"status": "expired"},
    "cf_demo_token_noscope_0000000000": {"scopes": ("account_settings:read",)},
}
DEMO_SUSPENDED_ACCOUNT_ID = "5a5e5de5a5e5de5a5e5de5a5e5de5a5e"
DEMO_SUSPENDED_TOKEN = "cf_demo_token_suspended_00000000"
DEMO_EVOLUTION_KEY = "sandbox-evolution-key"
DEMO_EVOLUTION_INSTANCE = "billing"
DEMO_STRIPE_SECRET_KEY = "sk_test_sandbox" + "0" * 24  # matches dj-stripe's key pattern
DEMO_WEBHOOK_SECRET = "whsec_sandbox_local_only_0000000000000000"
FIRST_RELEASE = "v1.0.0"
FIRST_BUNDLE = f"""// Sandbox Worker bundle {FIRST_RELEASE}
export default {{
  async fetch(request) {{
    return new Response("Hello from the sandbox bundle {FIRST_RELEASE}");
  }},
}};
""".encode()


ENV_FILE_HEADER = """\
# Sandbox mode: the settings of the local stand-ins, written by `make run` (python -m sandbox run --env-file).
# Every manage.py command in this checkout reads this file (setting SANDBOX_ENV_FILE), so a second
# terminal talks to the same sandbox. Values set in the environment win; a STRIPE_SECRET_KEY set in the
# environment or .env makes the console ignore this whole file (that is how to leave sandbox mode).
# The secrets are made once and kept: the database's encrypted values need CLOUD_MASTER_KEY.
"""


def _random(n: int) -> str:
    return "".join(secrets.choice(string.ascii_letters + string.digits) for _ in range(n))


def _signing_key() -> str:
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

    raw = Ed25519PrivateKey.generate().private_bytes(
        serialization.Encoding.Raw, serialization.PrivateFormat.Raw, serialization.NoEncryption())
    return base64.b64encode(raw).decode()


# The console's secrets in sandbox mode: made once per checkout, then read back from the env file.
SECRET_MAKERS = {
    "STRIPE_SECRET_KEY": lambda: "sk_test_sandbox" + _random(24),
    "STRIPE_WEBHOOK_SECRET": lambda: "whsec_sandbox" + _random(24),
    "CLOUD_MASTER_KEY": lambda: secrets.token_hex(32),
    "LICENSE_SIGNING_KEY": _signing_key,
    "OPS_SECRET": lambda: secrets.token_urlsafe(24),
    "EVOLUTION_API_KEY": lambda: "evo_sandbox_" + _random(16),
}


def read_env_file(path: str | Path) -> dict[str, str]:
    """KEY=value lines of an env file written by write_env_file ({} when absent)."""
    path = Path(path)
    if not path.is_file():
        return {}
    values = {}
    for line in path.read_text().splitlines():
        key, sep, value = line.partition("=")
        if sep and not line.lstrip().startswith("#"):
            values[key.strip()] = value.strip()
    return values


def sandbox_secrets(path: str | Path) -> dict[str, str]:
    """The secrets kept in the env file at `path`, with any missing one made now."""
    kept = read_env_file(path)
    return {name: kept.get(name) or make() for name, make in SECRET_MAKERS.items()}


def write_env_file(path: str | Path, values: dict[str, str], *, note: str = "") -> None:
    """Every value in one file, readable by the owner only, replaced whole (a reader never sees half)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    text = ENV_FILE_HEADER + (f"# {note}\n" if note else "") + "".join(f"{k}={v}\n" for k, v in values.items())
    tmp = path.with_name(path.name + ".tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as fh:
        fh.write(text)
    os.replace(tmp, path)


class Sandbox:
    def __init__(self, data_dir: str | Path = "var/sandbox", *, host: str = "127.0.0.1",
                 stripe_port: int = 12111, cloudflare_port: int = 12112, bundles_port: int = 12113,
                 whatsapp_port: int = 12114, smtp_port: int = 1025, mail_http_port: int = 12115,
                 webhook_url: str | None = None, webhook_secret: str = DEMO_WEBHOOK_SECRET,
                 evolution_api_key: str = DEMO_EVOLUTION_KEY, with_stripe: bool = True, reset: bool = False):
        self.data_dir = Path(data_dir)
        self.stripe_state_path = self.data_dir / "stripe.json"  # every Stripe object, the clock, the events
        self.reset = reset
        self.webhook_url, self.webhook_secret = webhook_url, webhook_secret
        self.stripe = None
        self.stripe_missing: str | None = None
        self._stripe_port, self._with_stripe, self._host = stripe_port, with_stripe, host
        self.cloudflare = FakeCloudflare(host, cloudflare_port)
        self.bundles = BundleHost(self.data_dir / "bundle-host", host, bundles_port)
        self.evolution = FakeEvolution(evolution_api_key, (DEMO_EVOLUTION_INSTANCE,), host, whatsapp_port)
        self.mail = MailCatcher(host, smtp_port, http_port=mail_http_port,
                                whatsapp_messages=lambda: self.evolution.messages)
        self._started: list = []

    def start(self) -> "Sandbox":
        try:
            if self._with_stripe:
                self._start_stripe()
            for service in (self.cloudflare, self.bundles, self.evolution, self.mail):
                service.start()
                self._started.append(service)
        except BaseException:
            self.stop()
            raise
        self.cloudflare.add_token(DEMO_TOKEN, DEMO_ACCOUNT_ID)
        for token, options in DEMO_FAILING_TOKENS.items():
            self.cloudflare.add_token(token, DEMO_ACCOUNT_ID, **options)
        self.cloudflare.add_token(DEMO_SUSPENDED_TOKEN, DEMO_SUSPENDED_ACCOUNT_ID)
        self.cloudflare.suspend_account(DEMO_SUSPENDED_ACCOUNT_ID)
        if FIRST_RELEASE not in self.bundles.versions():  # a data dir from an earlier run keeps its releases
            self.bundles.publish(FIRST_RELEASE, FIRST_BUNDLE)
        return self

    def _start_stripe(self) -> None:
        try:  # lazily: the Stripe emulator is a separate package that may not be there yet
            from .stripe import StripeEmulator
        except ModuleNotFoundError as exc:
            if exc.name != f"{__package__}.stripe":
                raise  # the emulator is there but broken: show it, do not call it missing
            self.stripe_missing = "sandbox.stripe is not available yet"
            return
        self.stripe = StripeEmulator(port=self._stripe_port, host=self._host,
                                     webhook_url=self.webhook_url or None, webhook_secret=self.webhook_secret,
                                     state_path=self.stripe_state_path, reset=self.reset)
        self.stripe.start()
        self._started.append(self.stripe)

    def stop(self) -> None:
        while self._started:
            self._started.pop().stop()

    def env(self) -> dict[str, str]:
        """The settings the console needs to reach these stand-ins, as environment lines."""
        env = {}
        if self.stripe is not None:
            env.update(STRIPE_API_HOST=self.stripe.url, STRIPE_SECRET_KEY=DEMO_STRIPE_SECRET_KEY,
                       STRIPE_WEBHOOK_SECRET=self.webhook_secret,
                       STRIPE_PRICE_PRO="price_sandbox_pro", STRIPE_PRICE_TEAM="price_sandbox_team",
                       DUNNING_CLOCK="stripe_sandbox")  # `clock advance` makes dunning's next step fall due
        env.update(
            CLOUDFLARE_API_BASE=f"{self.cloudflare.url}/client/v4",
            HELM_BUNDLE_MANIFEST_URL=self.bundles.manifest_url(),
            DEPLOY_ALLOW_HTTP_BUNDLES="true",  # the bundle host serves plain http on loopback
            EVOLUTION_API_URL=self.evolution.url,
            EVOLUTION_API_KEY=self.evolution.api_key,
            EVOLUTION_INSTANCE=DEMO_EVOLUTION_INSTANCE,
            SUPPORT_EMAIL="support@sandbox.test",
            EMAIL_URL=self.mail.url,  # last: `python -m sandbox run` prints it when every service is up
        )
        return env

    def describe(self) -> list[str]:
        """One line per service, for people."""
        if self.stripe is not None:
            hook = (f"webhooks -> {self.webhook_url}" if self.webhook_url
                    else "webhooks not delivered (no --webhook-url)")
            stripe = f"stripe      {self.stripe.url}  ({hook}; prices price_sandbox_pro, price_sandbox_team; " + (
                f"state restored from {self.stripe_state_path})" if self.stripe.restored
                else f"started empty, state saved in {self.stripe_state_path})")
        else:
            stripe = f"stripe      NOT STARTED: {self.stripe_missing or 'disabled'}"
        return [
            stripe,
            f"cloudflare  {self.cloudflare.url}/client/v4  (token {DEMO_TOKEN} for account {DEMO_ACCOUNT_ID}; "
            f"failing: {', '.join(DEMO_FAILING_TOKENS)}, {DEMO_SUSPENDED_TOKEN} on a suspended account)",
            f"bundles     {self.bundles.manifest_url()}  (releases {', '.join(self.bundles.versions())}; "
            f"files in {self.bundles.root})",
            f"whatsapp    {self.evolution.url}  (apikey {self.evolution.api_key}, instance {DEMO_EVOLUTION_INSTANCE})",
            f"smtp        {self.mail.url}  (inbox at {self.mail.http_url})",
        ]

    def __enter__(self):
        return self.start()

    def __exit__(self, *exc):
        self.stop()


__all__ = ["Sandbox", "DEMO_TOKEN", "DEMO_ACCOUNT_ID"]
