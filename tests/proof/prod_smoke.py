"""Production smoke test: the documented start, end to end, as an operator runs it.

    python -m tests.proof.prod_smoke [--database-url postgres://.../bc_smoke] [--redis-url redis://127.0.0.1:6379/12]

DJANGO_ENV=production with secrets made on the fly; the sandbox's Stripe stands in for Stripe. It runs
scripts/release.sh (migrate, createcachetable, collectstatic, setup_schedules, setup_webhook_endpoint,
which prints the endpoint's new signing secret), then gunicorn with gunicorn.conf.py and a qcluster on
the Redis broker, and checks: a page and its stylesheet (WhiteNoise, hashed and compressed), an admin
login, /health naming the cluster heartbeat, and a signed webhook acknowledged then applied by the
qcluster (seen on /metrics and in the customer row). Exits 1 on the first failure; logs under var/smoke/.
"""
from __future__ import annotations

import argparse
import base64
import hmac
import json
import re
import secrets
import struct
import subprocess
import sys
import time
from http.cookies import SimpleCookie
from pathlib import Path

import httpx

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))

from bench.harness import PY, ensure_database, free_port, stop, wait_port  # noqa: E402
from sandbox.stripe import StripeEmulator, sign_payload  # noqa: E402

OUT = ROOT / "var" / "smoke"
HOST = "console.example.com"


def log(msg: str) -> None:
    print(f"[smoke {time.strftime('%H:%M:%S')}] {msg}", flush=True)


def fail(msg: str) -> None:
    log(f"FAILED: {msg}")
    raise SystemExit(1)


def production_env(database_url: str, redis_url: str, stripe_url: str, static_root: Path, port: int) -> dict:
    """Every secret made here, now: nothing is read from the checkout's .env or sandbox file."""
    import os

    keep = {k: v for k, v in os.environ.items() if k in ("PATH", "HOME", "LANG", "LC_ALL", "TMPDIR")}
    return {
        **keep, "PYTHONUNBUFFERED": "1", "DJANGO_ENV": "production", "SANDBOX_ENV_FILE": "",
        "DJANGO_SETTINGS_MODULE": "billing_console.settings", "DATABASE_URL": database_url, "REDIS_URL": redis_url,
        "ALLOWED_HOSTS": HOST, "CSRF_TRUSTED_ORIGINS": f"https://{HOST}", "SITE_URL": f"https://{HOST}",
        "SECRET_KEY": secrets.token_urlsafe(50),
        "STRIPE_SECRET_KEY": "sk_test_" + secrets.token_hex(16), "STRIPE_API_HOST": stripe_url,
        "STRIPE_WEBHOOK_SECRET": "whsec_placeholder_until_the_endpoint_exists",
        "STRIPE_PRICE_PRO": "price_sandbox_pro",
        "CLOUD_MASTER_KEY": secrets.token_hex(32),
        "LICENSE_SIGNING_KEY": base64.b64encode(secrets.token_bytes(32)).decode(),
        "OPS_SECRET": secrets.token_urlsafe(32), "METRICS_TOKEN": secrets.token_urlsafe(32),
        "EVOLUTION_API_KEY": secrets.token_urlsafe(16),
        "HELM_BUNDLE_MANIFEST_URL": "https://bundles.example.com/manifest.json",
        "EMAIL_URL": "smtp://127.0.0.1:1", "STATIC_ROOT": str(static_root),
        "GUNICORN_BIND": f"127.0.0.1:{port}", "GUNICORN_WORKERS": "2", "GUNICORN_THREADS": "4",
        "Q_WORKERS": "2", "LOG_LEVEL": "WARNING",
        # What production requires besides secrets (preflight BC018, BC019): a support inbox, and the hop
        # count of the TLS proxy the deploy recipe puts in front.
        "SUPPORT_EMAIL": "support@" + HOST, "TRUSTED_PROXY_HOPS": "1",
    }


def manage_shell(env: dict, code: str) -> str:
    result = subprocess.run([PY, "manage.py", "shell", "-c", code], cwd=ROOT, env=env, capture_output=True,
                            text=True, timeout=120)
    if result.returncode:
        fail(f"manage.py shell: {result.stderr[-2000:]}")
    return result.stdout


def totp(secret_hex: str, at: float | None = None, step: int = 30, digits: int = 6) -> str:
    counter = int((at or time.time()) // step)
    digest = hmac.new(bytes.fromhex(secret_hex), struct.pack(">Q", counter), "sha1").digest()
    offset = digest[-1] & 0x0F
    code = (struct.unpack(">I", digest[offset:offset + 4])[0] & 0x7FFFFFFF) % 10 ** digits
    return str(code).zfill(digits)


class Browser:
    """Cookies kept by hand: the production cookies are Secure, and the TLS proxy is simulated by headers."""

    def __init__(self, port: int):
        self.http = httpx.Client(base_url=f"http://127.0.0.1:{port}", timeout=15, follow_redirects=False)
        self.cookies: dict[str, str] = {}

    def request(self, method: str, path: str, **kwargs) -> httpx.Response:
        headers = {"Host": HOST, "X-Forwarded-Proto": "https", "X-Forwarded-For": "203.0.113.7",
                   **kwargs.pop("headers", {})}
        if self.cookies:
            headers["Cookie"] = "; ".join(f"{k}={v}" for k, v in self.cookies.items())
        response = self.http.request(method, path, headers=headers, **kwargs)
        for raw in response.headers.get_list("set-cookie"):
            for name, morsel in SimpleCookie(raw).items():
                self.cookies[name] = morsel.value
        return response


def admin_login(browser: Browser, env: dict) -> None:
    """Log in to the admin as a fresh superuser. With django-otp installed (TOTP required in production)
    the user gets a TOTP device and the form's otp_token is filled from it; adapt here if the login form
    changes."""
    password = secrets.token_urlsafe(18)
    out = manage_shell(env, f"""
from django.conf import settings
from django.contrib.auth.models import User
User.objects.filter(username='smoke').delete()
user = User.objects.create_superuser('smoke', 'smoke@example.com', {password!r})
if 'django_otp.plugins.otp_totp' in settings.INSTALLED_APPS:
    from django_otp.plugins.otp_totp.models import TOTPDevice
    device = TOTPDevice.objects.create(user=user, name='smoke', confirmed=True)
    print('TOTP', device.persistent_id, device.key)
""")
    page = browser.request("GET", "/admin/login/")
    if page.status_code != 200:
        fail(f"/admin/login/ answered {page.status_code}")
    token = re.search(r'name="csrfmiddlewaretoken" value="([^"]+)"', page.text)
    if not token:
        fail("no CSRF token on the login page")
    form = {"csrfmiddlewaretoken": token.group(1), "username": "smoke", "password": password, "next": "/admin/"}
    totp_line = next((line.split() for line in out.splitlines() if line.startswith("TOTP ")), None)
    if totp_line:
        form.update({"otp_device": totp_line[1], "otp_token": totp(totp_line[2])})
    done = browser.request("POST", "/admin/login/", data=form, headers={"Referer": f"https://{HOST}/admin/login/"})
    if done.status_code != 302:
        fail(f"admin login answered {done.status_code}, not a redirect")
    home = browser.request("GET", "/admin/")
    if home.status_code != 200 or "Log out" not in home.text and "logout" not in home.text:
        fail(f"the admin front page after login answered {home.status_code}")
    log(f"admin login: OK{' (with TOTP)' if totp_line else ''}")


def metric(text: str, name: str, **labels) -> float:
    for line in text.splitlines():
        if line.startswith(name + "{") or line.startswith(name + " "):
            if all(f'{k}="{v}"' in line for k, v in labels.items()):
                return float(line.rsplit(" ", 1)[1])
    return 0.0


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--database-url", default="postgres://postgres@127.0.0.1:5432/bc_smoke")
    parser.add_argument("--redis-url", default="redis://127.0.0.1:6379/12")
    args = parser.parse_args()
    OUT.mkdir(parents=True, exist_ok=True)
    import redis

    redis.Redis.from_url(args.redis_url).flushdb()
    ensure_database(args.database_url, migrate=False)  # release.sh migrates
    emu = StripeEmulator()
    emu.start()
    port = free_port()
    env = production_env(args.database_url, args.redis_url, emu.url, OUT / "static", port)
    procs = []
    try:
        log("release steps (scripts/release.sh)")
        release = subprocess.run(["bash", "scripts/release.sh"], cwd=ROOT, env={**env, "PY": PY},
                                 capture_output=True, text=True, timeout=900)
        (OUT / "release.log").write_text(release.stdout + release.stderr)
        if release.returncode:
            fail(f"release.sh exited {release.returncode}: {release.stderr[-1500:]}")
        found = re.search(r"Signing secret: (whsec_\S+)", release.stdout)
        if not found:
            fail("setup_webhook_endpoint printed no signing secret")
        env["STRIPE_WEBHOOK_SECRET"] = found.group(1)
        endpoints = [e for e in emu.list_objects("webhook_endpoint") if e["url"] == f"https://{HOST}/api/billing/webhook"]
        if len(endpoints) != 1 or "*" in endpoints[0]["enabled_events"]:
            fail(f"the endpoint in Stripe is not right: {endpoints}")
        log(f"release: OK (endpoint {endpoints[0]['id']}, {len(endpoints[0]['enabled_events'])} event types)")

        web = subprocess.Popen([PY, "-m", "gunicorn", "-c", "gunicorn.conf.py"], cwd=ROOT, env=env,
                               stdout=(OUT / "gunicorn.log").open("wb"), stderr=subprocess.STDOUT)
        procs.append(web)
        worker = subprocess.Popen([PY, "manage.py", "qcluster"], cwd=ROOT, env=env, start_new_session=True,
                                  stdout=(OUT / "qcluster.log").open("wb"), stderr=subprocess.STDOUT)
        procs.append(worker)
        wait_port(port, web, 60)
        browser = Browser(port)

        page = browser.request("GET", "/")
        css = re.search(r'href="(/static/console/pages\.[0-9a-f]{12}\.css)"', page.text)
        if page.status_code != 200 or not css:
            fail(f"the pricing page answered {page.status_code} without a hashed stylesheet link")
        hashed = browser.request("GET", css.group(1), headers={"Accept-Encoding": "gzip"})
        plain = browser.request("GET", "/static/console/pages.css")
        if hashed.status_code != 200 or plain.status_code != 200 or "text/css" not in hashed.headers["content-type"]:
            fail(f"stylesheet: hashed {hashed.status_code}, plain {plain.status_code}")
        if hashed.headers.get("content-encoding") != "gzip" or "immutable" not in hashed.headers.get("cache-control", ""):
            fail(f"the hashed stylesheet is not served compressed and immutable: {dict(hashed.headers)}")
        log(f"page and stylesheet: OK ({css.group(1)} gzip, immutable; /static/console/pages.css 200)")

        admin_login(browser, env)

        health = browser.request("GET", "/health")
        if health.status_code != 200 or "heartbeatAgeSeconds" not in health.json().get("cluster", {}):
            fail(f"/health: {health.status_code} {health.text[:300]}")
        log(f"/health: OK (cluster {health.json()['cluster']['state']})")

        manage_shell(env, "from billing_console.models import Customer\n"
                          "Customer.objects.update_or_create(stripe_customer_id='cus_smoke', "
                          "defaults={'email': 'smoke-buyer@example.com', 'name': 'Before'})")
        event = {"id": "evt_smoke_" + secrets.token_hex(6), "object": "event", "type": "customer.updated",
                 "api_version": emu.api_version, "created": int(time.time()), "livemode": False,
                 "data": {"object": {"id": "cus_smoke", "object": "customer", "email": "smoke-buyer@example.com",
                                     "name": "Applied By The Cluster", "metadata": {}}}}
        body = json.dumps(event).encode()
        ack = browser.request("POST", "/api/billing/webhook", content=body, headers={
            "Content-Type": "application/json", "Stripe-Signature": sign_payload(body, env["STRIPE_WEBHOOK_SECRET"])})
        if ack.status_code != 200:
            fail(f"the signed webhook answered {ack.status_code}: {ack.text[:300]}")
        bad = browser.request("POST", "/api/billing/webhook", content=body, headers={
            "Content-Type": "application/json", "Stripe-Signature": sign_payload(body, "whsec_wrong")})
        if bad.status_code != 400:
            fail(f"a badly signed webhook answered {bad.status_code}")
        auth = {"Authorization": f"Bearer {env['METRICS_TOKEN']}"}
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            text = browser.request("GET", "/metrics", headers=auth).text
            if metric(text, "billing_stripe_events", type="customer.updated", outcome="processed") >= 1:
                break
            time.sleep(0.5)
        else:
            fail("the qcluster did not apply the event within 60 s (var/smoke/qcluster.log)")
        name = manage_shell(env, "from billing_console.models import Customer\n"
                                 "print(Customer.objects.get(stripe_customer_id='cus_smoke').name)").strip().splitlines()[-1]
        if name != "Applied By The Cluster":
            fail(f"the event was marked processed but the customer reads {name!r}")
        if browser.request("GET", "/metrics").status_code != 401:
            fail("/metrics answered without the token")
        log("signed webhook: acknowledged 200, applied by the qcluster on Redis (metrics and customer row)")
        log("production smoke: OK")
        return 0
    finally:
        for proc in reversed(procs):
            stop(proc)
        emu.stop()


if __name__ == "__main__":
    sys.exit(main())
