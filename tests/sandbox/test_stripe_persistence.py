"""The Stripe sandbox keeps every object, the clock and the event log in its state file across
restarts; `reset` starts empty; a state file is only ever replaced whole."""
import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest
import stripe

from sandbox.run import Sandbox
from sandbox.stripe import StripeEmulator

ROOT = Path(__file__).resolve().parents[2]
API_KEY = "sk_test_persist"


def subscribe(emu):
    api = stripe.StripeClient(API_KEY, base_addresses={"api": emu.url}, max_network_retries=0)
    session = api.v1.checkout.sessions.create(params={
        "mode": "subscription", "line_items": [{"price": "price_sandbox_pro"}],
        "customer_email": "ada@example.com", "success_url": "https://console.test/ok"})
    return api, emu.pay_checkout(session.id)


def test_a_restart_keeps_objects_clock_events_and_idempotency(tmp_path):
    path = tmp_path / "stripe.json"
    with StripeEmulator(state_path=path) as emu:
        assert not emu.restored
        api, result = subscribe(emu)
        api.v1.customers.update(result["customer"], params={"metadata": {"plan": "pro"}})
        created = api.v1.customers.create(params={"email": "once@example.com"}, options={"idempotency_key": "k1"})
        emu.set_card(result["customer"], "decline")
        emu.advance(days=31)
        now, events = emu.now(), emu.events
        invoice_id = emu.get(result["subscription"])["latest_invoice"]
    with StripeEmulator(state_path=path) as emu:
        assert emu.restored
        api = stripe.StripeClient(API_KEY, base_addresses={"api": emu.url}, max_network_retries=0)
        sub = api.v1.subscriptions.retrieve(result["subscription"])
        assert sub.status == "past_due" and sub.latest_invoice == invoice_id
        assert api.v1.customers.retrieve(result["customer"]).metadata.to_dict() == {"plan": "pro"}
        assert [e["id"] for e in emu.events] == [e["id"] for e in events]
        assert api.v1.events.retrieve(events[-1]["id"]).type == events[-1]["type"]
        assert now <= emu.now() <= now + 60
        # the failed-card setting and the retry schedule came back too: the day-3 retry fails again
        emu.advance(days=3)
        assert emu.get(invoice_id)["attempt_count"] == 2 and emu.get(invoice_id)["status"] == "open"
        # an Idempotency-Key from before the restart still replays: the same customer, no second one
        customers = len(emu.list_objects("customer"))
        again = api.v1.customers.create(params={"email": "once@example.com"}, options={"idempotency_key": "k1"})
        assert again.id == created.id and len(emu.list_objects("customer")) == customers
        assert [e["type"] for e in emu.events[len(events):]] == [  # only the day-3 retry
            "charge.failed", "payment_intent.payment_failed", "invoice.payment_failed"]
        emu.set_card(result["customer"], "succeed")
        emu.advance(days=2)
        assert emu.get(invoice_id)["status"] == "paid"


def test_reset_starts_empty_and_in_memory_emulators_write_nothing(tmp_path):
    path = tmp_path / "stripe.json"
    with StripeEmulator(state_path=path) as emu:
        subscribe(emu)
    with StripeEmulator(state_path=path, reset=True) as emu:
        assert not emu.restored
        assert emu.list_objects("customer") == [] and emu.events == []
        assert [p["id"] for p in emu.list_objects("price")] == ["price_sandbox_pro", "price_sandbox_team"]
    assert json.loads(path.read_text())["store"]["ids"]["customer"] == []
    with StripeEmulator() as emu:
        assert emu.state_path is None
        subscribe(emu)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["stripe.json"]


def test_the_state_file_is_replaced_atomically(tmp_path, monkeypatch):
    path = tmp_path / "stripe.json"
    with StripeEmulator(state_path=path) as emu:
        subscribe(emu)
        before = path.read_bytes()

        def crash(*args):
            raise OSError("disk full")
        monkeypatch.setattr(os, "replace", crash)
        with pytest.raises(OSError):
            emu.advance(days=31)
        monkeypatch.undo()
        assert path.read_bytes() == before  # the old file, whole
        assert sorted(p.name for p in tmp_path.iterdir()) == ["stripe.json"]  # no temp file left
        emu.advance(seconds=1)
    state = json.loads(path.read_text())
    assert {"version", "saved_at", "clock_offset", "store", "eventlog"} <= set(state)


def test_a_bad_state_file_is_an_error_not_a_silent_reset(tmp_path):
    path = tmp_path / "stripe.json"
    path.write_text(json.dumps({"version": 999}))
    with pytest.raises(ValueError, match="--reset"):
        StripeEmulator(state_path=path)
    assert StripeEmulator(state_path=path, reset=True).restored is False


def test_sandbox_run_keeps_stripe_state_in_the_data_dir_and_reset_empties_it(tmp_path):
    ports = dict(stripe_port=0, cloudflare_port=0, bundles_port=0, whatsapp_port=0, smtp_port=0, mail_http_port=0)
    with Sandbox(tmp_path, **ports) as sandbox:
        assert "started empty, state saved in" in sandbox.describe()[0]
        _, result = subscribe(sandbox.stripe)
    with Sandbox(tmp_path, **ports) as sandbox:
        assert f"state restored from {tmp_path / 'stripe.json'}" in sandbox.describe()[0]
        assert sandbox.stripe.get(result["customer"])["email"] == "ada@example.com"
    with Sandbox(tmp_path, reset=True, **ports) as sandbox:
        assert "started empty" in sandbox.describe()[0]
        assert sandbox.stripe.list_objects("customer") == []


def test_cli_serve_with_state_restores_and_state_command_says_so(tmp_path):
    path = tmp_path / "stripe.json"

    def serve(*extra):
        process = subprocess.Popen([sys.executable, "-m", "sandbox.stripe", "serve", "--port", "0",
                                    "--state", str(path), *extra], cwd=ROOT, stdout=subprocess.PIPE, text=True)
        url = process.stdout.readline().split("listening on ")[1].split()[0]
        return process, url, process.stdout.readline().strip()

    def cli(*args):
        return subprocess.run([sys.executable, "-m", "sandbox.stripe", *args], cwd=ROOT, capture_output=True,
                              text=True, timeout=30)

    process, url, line = serve()
    try:
        assert line == f"State started empty, saved in {path}"
        assert cli("clock", "advance", "--days", "2", "--url", url).returncode == 0
    finally:
        process.send_signal(signal.SIGTERM)
        process.wait(timeout=10)
    process, url, line = serve()
    try:
        assert line == f"State restored from {path}"
        state = cli("state", "--url", url)
        assert state.returncode == 0 and state.stdout.startswith(f"restored from {path}")
        clock = cli("clock", "show", "--url", url)
        assert "offset 172" in clock.stdout  # two days (172,800 s) and a little
    finally:
        process.send_signal(signal.SIGTERM)
        process.wait(timeout=10)
    process, url, line = serve("--reset")
    try:
        assert line == f"State started empty, saved in {path}"
    finally:
        process.send_signal(signal.SIGTERM)
        process.wait(timeout=10)
