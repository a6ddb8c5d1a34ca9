"""The launcher: every stand-in up with demo data, env lines printed, clean stop on SIGTERM."""
import os
import signal
import subprocess
import sys
from pathlib import Path

import httpx

from sandbox.run import DEMO_ACCOUNT_ID, DEMO_TOKEN, Sandbox

ROOT = Path(__file__).resolve().parents[2]
PORTS = dict(stripe_port=0, cloudflare_port=0, bundles_port=0, whatsapp_port=0, smtp_port=0, mail_http_port=0)


def test_sandbox_starts_everything_with_demo_data(tmp_path):
    with Sandbox(tmp_path, **PORTS) as sandbox, httpx.Client(timeout=5) as http:
        env = sandbox.env()
        assert set(env) >= {"STRIPE_API_HOST", "STRIPE_SECRET_KEY", "STRIPE_WEBHOOK_SECRET", "CLOUDFLARE_API_BASE",
                            "HELM_BUNDLE_MANIFEST_URL", "EVOLUTION_API_URL", "EVOLUTION_API_KEY", "EMAIL_URL"}
        price = http.get(f"{env['STRIPE_API_HOST']}/v1/prices/{env['STRIPE_PRICE_PRO']}",
                         auth=(env["STRIPE_SECRET_KEY"], ""))
        assert price.status_code == 200 and price.json()["id"] == "price_sandbox_pro"
        verify = http.get(f"{env['CLOUDFLARE_API_BASE']}/accounts/{DEMO_ACCOUNT_ID}/tokens/verify",
                          headers={"Authorization": f"Bearer {DEMO_TOKEN}"})
        assert verify.status_code == 200
        assert http.get(env["HELM_BUNDLE_MANIFEST_URL"]).json()["version"] == "v1.0.0"
        state = http.get(f"{env['EVOLUTION_API_URL']}/instance/connectionState/{env['EVOLUTION_INSTANCE']}",
                         headers={"apikey": env["EVOLUTION_API_KEY"]})
        assert state.json()["instance"]["state"] == "open"
        assert env["EMAIL_URL"] == sandbox.mail.url
        assert len(sandbox.describe()) == 5


def test_sandbox_without_stripe_leaves_its_settings_out(tmp_path):
    with Sandbox(tmp_path, with_stripe=False, **PORTS) as sandbox:
        assert "STRIPE_API_HOST" not in sandbox.env()
        assert sandbox.describe()[0].startswith("stripe      NOT STARTED")


def test_launcher_prints_env_and_stops_on_sigterm(tmp_path):
    args = [sys.executable, "-m", "sandbox", "run", "--env", "--data-dir", str(tmp_path), "--webhook-url", ""]
    for name in ("stripe", "cloudflare", "bundles", "whatsapp", "smtp", "mail-http"):
        args += [f"--{name}-port", "0"]
    process = subprocess.Popen(args, cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                               env={**os.environ, "PYTHONPATH": str(ROOT)})
    try:
        env = {}
        while "EMAIL_URL" not in env:
            line = process.stdout.readline()
            assert line, process.stderr.read()
            key, _, value = line.strip().partition("=")
            env[key] = value
        assert (tmp_path / "sandbox.env").read_text().splitlines()[-1] == f"EMAIL_URL={env['EMAIL_URL']}"
        assert httpx.get(env["HELM_BUNDLE_MANIFEST_URL"], timeout=5).status_code == 200
        process.send_signal(signal.SIGTERM)
        assert process.wait(timeout=10) == 0
        assert "stopped" in process.stderr.read()
        assert not (tmp_path / "sandbox.env").exists()
    finally:
        if process.poll() is None:
            process.kill()
