"""Every stand-in together, for the offline demo (`python -m sandbox run`) and end-to-end tests.

    sandbox = Sandbox(data_dir=tmp_path, stripe_port=0, cloudflare_port=0, ...).start()
    sandbox.env()      # {"STRIPE_API_HOST": ..., "CLOUDFLARE_API_BASE": ..., "EMAIL_URL": ..., ...}
    sandbox.stop()
"""
from __future__ import annotations

from pathlib import Path

from .bundles import BundleHost
from .cloudflare import FakeCloudflare
from .smtp import MailCatcher
from .whatsapp import FakeEvolution

DEMO_ACCOUNT_ID = "0c1a55e7d3b54f0e9c8a7b6d5e4f3a21"  # 32 hex, like a Cloudflare account id
DEMO_TOKEN = "cf_demo_token_7Qm2xK9vR4tLw8Hn3Zp6"
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


class Sandbox:
    def __init__(self, data_dir: str | Path = "var/sandbox", *, host: str = "127.0.0.1",
                 stripe_port: int = 12111, cloudflare_port: int = 12112, bundles_port: int = 12113,
                 whatsapp_port: int = 12114, smtp_port: int = 1025, mail_http_port: int = 12115,
                 webhook_url: str | None = None, webhook_secret: str = DEMO_WEBHOOK_SECRET,
                 evolution_api_key: str = DEMO_EVOLUTION_KEY, with_stripe: bool = True):
        self.data_dir = Path(data_dir)
        self.webhook_url, self.webhook_secret = webhook_url, webhook_secret
        self.stripe = None
        self.stripe_missing: str | None = None
        self._stripe_port, self._with_stripe, self._host = stripe_port, with_stripe, host
        self.cloudflare = FakeCloudflare(host, cloudflare_port)
        self.bundles = BundleHost(self.data_dir / "bundle-host", host, bundles_port)
        self.evolution = FakeEvolution(evolution_api_key, (DEMO_EVOLUTION_INSTANCE,), host, whatsapp_port)
        self.mail = MailCatcher(host, smtp_port, http_port=mail_http_port)
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
                                     webhook_url=self.webhook_url or None, webhook_secret=self.webhook_secret)
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
                       STRIPE_PRICE_PRO="price_sandbox_pro", STRIPE_PRICE_TEAM="price_sandbox_team")
        env.update(
            CLOUDFLARE_API_BASE=f"{self.cloudflare.url}/client/v4",
            HELM_BUNDLE_MANIFEST_URL=self.bundles.manifest_url(),
            DEPLOY_ALLOW_HTTP_BUNDLES="true",  # the bundle host serves plain http on loopback
            EVOLUTION_API_URL=self.evolution.url,
            EVOLUTION_API_KEY=self.evolution.api_key,
            EVOLUTION_INSTANCE=DEMO_EVOLUTION_INSTANCE,
            EMAIL_URL=self.mail.url,
        )
        return env

    def describe(self) -> list[str]:
        """One line per service, for people."""
        if self.stripe is not None:
            hook = (f"webhooks -> {self.webhook_url}" if self.webhook_url
                    else "webhooks not delivered (no --webhook-url)")
            stripe = f"stripe      {self.stripe.url}  ({hook}; prices price_sandbox_pro, price_sandbox_team)"
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
