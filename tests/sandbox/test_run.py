"""The launcher: every stand-in up with demo data, env lines printed, clean stop on SIGTERM."""
import os
import signal
import smtplib
import subprocess
import sys
from pathlib import Path

import httpx

from sandbox.run import (DEMO_ACCOUNT_ID, DEMO_TOKEN, SECRET_MAKERS, Sandbox, read_env_file, sandbox_secrets,
                         write_env_file)

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


def _launch(tmp_path, env_file, *extra):
    args = [sys.executable, "-m", "sandbox", "run", "--data-dir", str(tmp_path / "data"), "--webhook-url", "",
            "--env-file", str(env_file), "--site-url", "http://127.0.0.1:8765/", *extra]
    for name in ("stripe", "cloudflare", "bundles", "whatsapp", "smtp", "mail-http"):
        args += [f"--{name}-port", "0"]
    process = subprocess.Popen(args, cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                               env={**os.environ, "PYTHONPATH": str(ROOT)})
    try:
        while True:  # the file is whole (written under another name, then renamed) once this line is in
            line = process.stdout.readline()
            assert line, process.stderr.read()
            if line.startswith("env "):
                break
        values = read_env_file(env_file)
        assert f"# written by sandbox pid {process.pid}" in env_file.read_text().splitlines()
        process.send_signal(signal.SIGTERM)
        assert process.wait(timeout=10) == 0
    finally:
        if process.poll() is None:
            process.kill()
    return values


def test_env_file_holds_every_setting_of_sandbox_mode_and_keeps_its_secrets(tmp_path):
    env_file = tmp_path / "var" / "sandbox.env"
    first = _launch(tmp_path, env_file)
    assert set(first) >= {
        "STRIPE_SECRET_KEY", "STRIPE_WEBHOOK_SECRET", "STRIPE_API_HOST", "STRIPE_PRICE_PRO", "STRIPE_PRICE_TEAM",
        "CLOUD_MASTER_KEY", "LICENSE_SIGNING_KEY", "OPS_SECRET", "HELM_BUNDLE_MANIFEST_URL", "CLOUDFLARE_API_BASE",
        "EVOLUTION_API_URL", "EVOLUTION_API_KEY", "EVOLUTION_INSTANCE", "EMAIL_URL", "SITE_URL"}
    assert first["SITE_URL"] == "http://127.0.0.1:8765"
    assert first["STRIPE_SECRET_KEY"].startswith("sk_test_") and first["STRIPE_WEBHOOK_SECRET"].startswith("whsec_")
    assert env_file.exists(), "kept after exit: a second terminal and the next run read it"
    assert env_file.stat().st_mode & 0o077 == 0
    second = _launch(tmp_path, env_file)
    for name in SECRET_MAKERS:  # encrypted rows stay readable and webhooks keep verifying across restarts
        assert second[name] == first[name]
    assert second["STRIPE_API_HOST"] != first["STRIPE_API_HOST"]  # port 0: this run's ports, not the last's


def test_sandbox_secrets_fill_only_what_is_missing(tmp_path):
    env_file = tmp_path / "sandbox.env"
    write_env_file(env_file, {"CLOUD_MASTER_KEY": "kept-master-key-0123456789abcdef", "SITE_URL": "http://x"})
    made = sandbox_secrets(env_file)
    assert made["CLOUD_MASTER_KEY"] == "kept-master-key-0123456789abcdef"
    assert set(made) == set(SECRET_MAKERS) and all(made.values())
    assert sandbox_secrets(tmp_path / "absent.env")["CLOUD_MASTER_KEY"] != made["CLOUD_MASTER_KEY"]


def test_inbox_page_shows_whatsapp_messages_beside_the_emails(tmp_path):
    with Sandbox(tmp_path, **PORTS) as sandbox, httpx.Client(timeout=5) as http:
        env = sandbox.env()
        page = http.get(sandbox.mail.http_url + "/").text
        assert "No WhatsApp message yet" in page
        sent = http.post(f"{env['EVOLUTION_API_URL']}/message/sendText/{env['EVOLUTION_INSTANCE']}",
                         headers={"apikey": env["EVOLUTION_API_KEY"]},
                         json={"number": "+5511999990000", "text": "Your payment failed <b>retry</b>"})
        assert sent.status_code == 201
        with smtplib.SMTP(sandbox.mail.host, sandbox.mail.port) as smtp:
            smtp.sendmail("billing@localhost", ["erin@example.com"],
                          "Subject: Payment failed\r\nTo: erin@example.com\r\n\r\nPlease update your card.")
        sandbox.mail.wait_for(timeout=5)
        page = http.get(sandbox.mail.http_url + "/").text
        assert "<h2>Email (1)</h2>" in page and "Payment failed" in page and "erin@example.com" in page
        assert '<h2 id="whatsapp">WhatsApp (1)</h2>' in page
        assert "+5511999990000" in page and "Your payment failed &lt;b&gt;retry&lt;/b&gt;" in page
