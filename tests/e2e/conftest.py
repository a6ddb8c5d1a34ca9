"""End-to-end: a real browser (Debian's chromium, driven by Playwright) against the console started for
real (`manage.py runserver` in a subprocess, tasks inline) with every sandbox stand-in on port 0 and the
real SMTP catcher. The console's database is this test session's database, so the test can arrange
and inspect rows; tests here use `transactional_db` so what they write is committed and visible to it.
"""
from __future__ import annotations

import base64
import logging
import os
import shutil
import socket
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from django.conf import settings as django_settings

from sandbox.run import Sandbox

ROOT = Path(__file__).resolve().parents[2]
ARTIFACTS = ROOT / "var" / "test-artifacts"
CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
                 "--disable-component-update", "--disable-sync", "--no-first-run"]
# Playwright's sync API keeps an event loop in this thread; the ORM calls the tests make are still synchronous.
os.environ.setdefault("DJANGO_ALLOW_ASYNC_UNSAFE", "true")
logging.getLogger("mail.log").setLevel(logging.WARNING)  # aiosmtpd logs every SMTP command at INFO


def _chromium() -> str:
    """Debian's chromium (a browser cannot be downloaded here): installed with apt when missing."""
    path = shutil.which("chromium") or (CHROMIUM if os.path.exists(CHROMIUM) else None)
    if path is None:
        # A new machine has no package lists yet: update them first.
        subprocess.run(["apt-get", "update", "-qq"], check=False, stdout=subprocess.DEVNULL,
                       stderr=subprocess.STDOUT, timeout=600)
        subprocess.run(["apt-get", "install", "-y", "--no-install-recommends", "chromium"], check=False,
                       stdout=subprocess.DEVNULL, stderr=subprocess.STDOUT, timeout=600)
        path = shutil.which("chromium")
    if path is None:
        pytest.fail("chromium is not installed and `apt-get install -y chromium` failed")
    return path


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _wait_http(url: str, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            httpx.get(url, timeout=1.0)
            return
        except httpx.HTTPError:
            time.sleep(0.1)
    raise RuntimeError(f"nothing answered at {url} after {timeout} s")


@pytest.fixture(scope="session")
def browser():
    from playwright.sync_api import sync_playwright

    executable = _chromium()
    with sync_playwright() as playwright:
        chromium = playwright.chromium.launch(executable_path=executable, headless=True, args=CHROMIUM_ARGS)
        yield chromium
        chromium.close()


class Console:
    """The running console: its URL, the sandbox, and a place for screenshots."""

    def __init__(self, url: str, sandbox: Sandbox, log_path: Path):
        self.url, self.sandbox, self.log_path = url, sandbox, log_path

    def shot(self, page, name: str, *, full_page: bool = True) -> Path:
        ARTIFACTS.mkdir(parents=True, exist_ok=True)
        path = ARTIFACTS / f"{name}.png"
        page.screenshot(path=str(path), full_page=full_page)
        return path


@pytest.fixture
def console(transactional_db, tmp_path, settings):
    """Sandbox + runserver on free ports, pointed at this session's test database."""
    if django_settings.DATABASES["default"]["ENGINE"].endswith("sqlite3"):
        # The console runs in a second process, and SQLite's test database lives in this one's memory.
        pytest.skip("the browser journey needs a test database a second process can open: PostgreSQL (CI)")
    port = _free_port()
    url = f"http://127.0.0.1:{port}"
    sandbox = Sandbox(data_dir=tmp_path / "sandbox", stripe_port=0, cloudflare_port=0, bundles_port=0,
                      whatsapp_port=0, smtp_port=0, mail_http_port=0,
                      webhook_url=f"{url}/api/billing/webhook").start()
    signing = base64.b64encode(Ed25519PrivateKey.generate().private_bytes(
        serialization.Encoding.Raw, serialization.PrivateFormat.Raw, serialization.NoEncryption())).decode()
    db = django_settings.DATABASES["default"]
    env = {
        **{k: v for k, v in os.environ.items() if not k.startswith(("STRIPE_", "DJANGO_ALLOW"))},
        **sandbox.env(),
        "DATABASE_URL": f"postgres://{db['USER']}@{db['HOST'] or '127.0.0.1'}:{db['PORT'] or 5432}/{db['NAME']}",
        "DEBUG": "true", "SITE_URL": url, "Q_SYNC": "true", "REDIS_URL": "",
        "CLOUD_MASTER_KEY": settings.CLOUD_MASTER_KEY, "LICENSE_SIGNING_KEY": signing, "OPS_SECRET": "e2e-ops-secret",
        "STRIPE_DJSTRIPE_SYNC": "false", "PYTHONUNBUFFERED": "1",
    }
    if not db["NAME"].startswith("test_"):
        pytest.fail("the e2e console must run on the test database")
    # Settings the test process itself uses when it calls services (same vault key, same stand-ins,
    # and the console's own password hasher for the users a test creates).
    settings.PASSWORD_HASHERS = ["django.contrib.auth.hashers.PBKDF2PasswordHasher"]
    settings.CLOUDFLARE_API_BASE = env["CLOUDFLARE_API_BASE"]
    settings.HELM_BUNDLE_MANIFEST_URL = env["HELM_BUNDLE_MANIFEST_URL"]
    settings.DEPLOY_ALLOW_HTTP_BUNDLES = True
    from django.core.management import call_command

    call_command("createcachetable", verbosity=0)  # the console's cache (rate limits) lives in the database
    log_path = ARTIFACTS / "console.log"
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    with open(log_path, "w") as log:
        server = subprocess.Popen([sys.executable, "manage.py", "runserver", f"127.0.0.1:{port}", "--noreload",
                                   "--skip-checks"], cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT)
    try:
        _wait_http(f"{url}/health", 30)
        yield Console(url, sandbox, log_path)
    finally:
        server.terminate()  # its own pid only (never the process group)
        try:
            server.wait(10)
        except subprocess.TimeoutExpired:
            server.kill()
        sandbox.stop()


@pytest.fixture
def page(browser, console):
    context = browser.new_context(viewport={"width": 1280, "height": 900}, base_url=console.url)
    page = context.new_page()
    page.set_default_timeout(15_000)
    yield page
    context.close()
