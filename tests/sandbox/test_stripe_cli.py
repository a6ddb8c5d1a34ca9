"""`python -m sandbox.stripe`: every command explains itself, and the commands work against a running sandbox."""
import subprocess
import sys
from pathlib import Path

import pytest
import stripe

from sandbox.stripe import StripeEmulator
from sandbox.stripe.__main__ import build_parser, main

ROOT = Path(__file__).resolve().parents[2]
COMMANDS = ["serve", "customers", "subscriptions", "invoices", "fail-payments", "succeed-payments", "refund",
            "dispute", "clock", "state", "charges", "authenticate"]


def test_top_level_help_lists_every_command_and_shows_how_to_make_a_renewal_fail():
    result = subprocess.run([sys.executable, "-m", "sandbox.stripe", "--help"], cwd=ROOT, capture_output=True,
                            text=True, timeout=30)
    assert result.returncode == 0
    for command in COMMANDS:
        assert f"\n    {command}" in result.stdout
    assert "make a renewal fail" in result.stdout
    assert "fail-payments cus_" in result.stdout and "clock advance --days 31" in result.stdout


@pytest.mark.parametrize("command", COMMANDS)
def test_every_subcommand_help_explains_itself(command, capsys):
    with pytest.raises(SystemExit) as exit_:
        main([command, "--help"])
    assert exit_.value.code == 0
    out = capsys.readouterr().out
    description = out.split("\n\n")[1]
    assert len(description) > 30, out


@pytest.fixture
def emu():
    with StripeEmulator() as emulator:
        yield emulator


def run(capsys, *args):
    code = main(list(args))
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def subscribe(emu):
    api = stripe.StripeClient("sk_test_cli", base_addresses={"api": emu.url}, max_network_retries=0)
    session = api.v1.checkout.sessions.create(params={
        "mode": "subscription", "line_items": [{"price": "price_sandbox_pro"}],
        "customer_email": "ada@example.com", "success_url": "https://console.test/ok"})
    return emu.pay_checkout(session.id)


def test_failed_renewal_walkthrough_from_the_help(emu, capsys):
    result = subscribe(emu)
    customer, url = result["customer"], emu.url
    code, out, _ = run(capsys, "customers", "--url", url)
    assert code == 0 and customer in out and "ada@example.com" in out
    code, out, _ = run(capsys, "fail-payments", customer, "--url", url)
    assert code == 0 and out.strip() == f"{customer}: charges fail from now on"
    code, out, _ = run(capsys, "clock", "advance", "--days", "31", "--url", url)
    assert code == 0 and "invoice.payment_failed" in out.split()
    code, out, _ = run(capsys, "subscriptions", "--customer", customer, "--url", url)
    assert result["subscription"] in out and "past_due" in out
    code, out, _ = run(capsys, "invoices", "--customer", customer, "--status", "open", "--url", url)
    assert code == 0 and len(out.strip().splitlines()) == 2 and " open " in out
    code, out, _ = run(capsys, "succeed-payments", customer, "--url", url)
    assert out.strip() == f"{customer}: charges succeed from now on"
    code, out, _ = run(capsys, "clock", "advance", "--days", "3", "--url", url)
    assert "invoice.paid" in out.split() and emu.get(result["subscription"])["status"] == "active"


def test_cli_errors_are_plain_and_exit_nonzero(emu, capsys):
    code, _, err = run(capsys, "fail-payments", "cus_nope", "--url", emu.url)
    assert code == 1 and "No such customer: 'cus_nope'" in err
    code, _, err = run(capsys, "clock", "advance", "--url", emu.url)
    assert code == 1 and "give --days" in err
    code, _, err = run(capsys, "clock", "show", "--clock", "clock_123", "--url", emu.url)
    assert code == 1 and "No such test clock: 'clock_123'" in err
    code, _, err = run(capsys, "refund", "in_123", "--amount", "100", "--url", emu.url)
    assert code == 1 and "invoice in_123 has no paid payment to refund" in err
    code, _, err = run(capsys, "refund", "ch_123", "--url", emu.url)
    assert code == 1 and "No such charge: 'ch_123'" in err
    code, _, err = run(capsys, "dispute", "ch_123", "--url", emu.url)
    assert code == 1 and "No such charge: 'ch_123'" in err
    code, _, err = run(capsys, "authenticate", "pi_123", "--url", emu.url)
    assert code == 1 and "No such payment_intent: 'pi_123'" in err
    code, _, err = run(capsys, "customers", "--url", "http://127.0.0.1:9")
    assert code == 1 and "cannot reach the Stripe sandbox" in err
    with pytest.raises(SystemExit):
        build_parser().parse_args(["fail-payments"])  # CUSTOMER is required


def test_refund_and_dispute_a_paid_invoice_from_the_command_line(emu, capsys):
    result = subscribe(emu)
    url = emu.url
    code, out, _ = run(capsys, "charges", "--customer", result["customer"], "--url", url)
    assert code == 0 and len(out.strip().splitlines()) == 2 and " succeeded " in out and "9.00 USD" in out
    charge_id = out.strip().splitlines()[1].split()[0]

    code, out, _ = run(capsys, "refund", result["invoice"], "--amount", "300", "--url", url)
    assert code == 0 and f"3.00 USD of {charge_id} succeeded" in out
    code, out, _ = run(capsys, "refund", charge_id, "--reason", "requested_by_customer", "--url", url)
    assert code == 0 and "6.00 USD" in out
    assert emu.get(charge_id)["refunded"] is True
    code, _, err = run(capsys, "refund", charge_id, "--url", url)
    assert code == 1 and "has already been refunded" in err

    second = subscribe(emu)
    charge = next(c for c in emu.list_objects("charge") if c["customer"] == second["customer"])
    code, out, _ = run(capsys, "dispute", charge["id"], "--reason", "product_not_received", "--url", url)
    assert code == 0 and "needs_response (product_not_received)" in out
    assert emu.get(charge["id"])["disputed"] is True
    assert [e["type"] for e in emu.events[-3:]] == ["charge.dispute.created", "charge.dispute.funds_withdrawn",
                                                   "charge.updated"]
    code, _, err = run(capsys, "dispute", charge["id"], "--url", url)
    assert code == 1 and "already disputed" in err
