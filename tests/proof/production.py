"""A production environment for subprocesses: DJANGO_ENV=production with every secret set to a known,
fake value, so tests can prove the deploy settings (and that the values never leak)."""
from __future__ import annotations

import base64
import os
import subprocess
import tempfile
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]

# Known fake secrets: shaped like the real ones, so shape checks pass and scans can look for them.
SECRETS = {
    "SECRET_KEY": "proof-secret-key-Zq8vN3mK7xR2wT5yB9cF4hJ6pL1sD0gA-uE3iO8",
    "STRIPE_SECRET_KEY": "sk_test_proofSecretKeyAbCdEfGhIjKlMnOpQr",
    "STRIPE_WEBHOOK_SECRET": "whsec_test-proof-webhook-secret-0123",
    "CLOUD_MASTER_KEY": "proof-master-key-5f2b9c1e7a3d4b8f",
    # base64 of 32 raw bytes: a valid Ed25519 private key nobody else uses.
    "LICENSE_SIGNING_KEY": base64.b64encode(bytes(range(7, 39))).decode(),
    "OPS_SECRET": "proof-ops-secret-Hy7Tg3Kq9Wm2Zx5Vb8Nc",
    "EVOLUTION_API_KEY": "proof-evolution-key-Rt6Yu8Io0Pa2Sd4F",
}


_STATIC_ROOT: list[str] = []


def collected_static(env: dict[str, str]) -> str:
    """STATIC_ROOT after `collectstatic` with production storage (hashed names), once per test run:
    production pages name their CSS through the manifest, as after the release steps."""
    if not _STATIC_ROOT:
        root = tempfile.mkdtemp(prefix="bc-static-")
        subprocess.run([sys.executable, "manage.py", "collectstatic", "--noinput", "-v", "0"], cwd=ROOT,
                       env={**env, "STATIC_ROOT": root}, check=True, capture_output=True, timeout=300)
        _STATIC_ROOT.append(root)
    return _STATIC_ROOT[0]


def production_env(database_url: str, **extra: str) -> dict[str, str]:
    keep = {k: v for k, v in os.environ.items() if k in ("PATH", "HOME", "LANG", "LC_ALL", "TMPDIR")}
    env = {
        **keep,
        "DJANGO_ENV": "production",
        "DJANGO_SETTINGS_MODULE": "billing_console.settings",
        "ALLOWED_HOSTS": "console.example.com",
        "CSRF_TRUSTED_ORIGINS": "https://console.example.com",
        "SITE_URL": "https://console.example.com",
        "DATABASE_URL": database_url,
        "STRIPE_PRICE_PRO": "price_proof_pro",
        "HELM_BUNDLE_MANIFEST_URL": "https://bundles.example.com/manifest.json",
        "EMAIL_URL": "smtp://mail.example.com:587",
        "SUPPORT_EMAIL": "support@example.com",
        # Production trusts the proxy's X-Forwarded-Proto: one proxy in front.
        "TRUSTED_PROXY_HOPS": "1",
        **SECRETS,
        **extra,
    }
    env.setdefault("STATIC_ROOT", collected_static(env))
    return env


def run_python(code: str, env: dict[str, str], *args: str, timeout: float = 120) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, *(("-c", code) if code else ()), *args], cwd=ROOT, env=env,
                          capture_output=True, text=True, timeout=timeout)
