import pytest
from django.core.management import call_command

from billing_console.ops import scheduling
from billing_console.ops.checks import preflight_problems

GOOD = {
    "STRIPE_SECRET_KEY": "sk_test_" + "a" * 30,
    "STRIPE_WEBHOOK_SECRET": "whsec_" + "b" * 30,
    "CLOUD_MASTER_KEY": "c" * 32,
    "LICENSE_SIGNING_KEY": "d" * 44,
    "HELM_BUNDLE_MANIFEST_URL": "https://bundles.example.com/manifest.json",
    "EMAIL_BACKEND": "django.core.mail.backends.smtp.EmailBackend",
    "OPS_SECRET": "e" * 32,
    "STRIPE_LIVE_MODE": False,
    "DEBUG": False,
}


@pytest.fixture
def ready(settings, db, monkeypatch):
    for name, value in GOOD.items():
        setattr(settings, name, value)
    settings.PLANS = {**settings.PLANS, "pro": {**settings.PLANS["pro"], "price_id": "price_123"}}
    # Migrations are not applied in the test database (--nomigrations): judge the rest.
    monkeypatch.setattr("billing_console.ops.checks._migration_problems", lambda: [])
    scheduling.schedules_sync()
    return settings


def test_go_when_everything_is_in_place(ready, capsys):
    call_command("preflight", "--mode", "test")
    out = capsys.readouterr().out
    assert out.strip().endswith("GO") and "NO_GO" not in out


def test_no_go_lists_each_blocker_and_exits_1(ready, capsys):
    ready.STRIPE_WEBHOOK_SECRET = ""
    ready.CLOUD_MASTER_KEY = "short"
    with pytest.raises(SystemExit) as exit_info:
        call_command("preflight", "--mode", "test")
    assert exit_info.value.code == 1
    out = capsys.readouterr().out
    assert "STRIPE_WEBHOOK_SECRET is not set" in out and "CLOUD_MASTER_KEY" in out and "NO_GO (2 blockers)" in out


def test_live_mode_refuses_a_test_key_and_debug(ready):
    ready.STRIPE_LIVE_MODE = True
    ready.DEBUG = True
    ids = {pid for pid, _ in preflight_problems("live")}
    assert {"BC003", "BC015"} <= ids


def test_mode_mismatch_with_setting_is_a_blocker(ready):
    ids = {pid for pid, _ in preflight_problems("live")}
    assert "BC004" in ids  # STRIPE_LIVE_MODE is False but we check for live


def test_unregistered_schedules_block(ready, monkeypatch):
    from billing_console.ops.schedules import Cron

    monkeypatch.setattr("billing_console.ops.schedules.SCHEDULES", [Cron("not_registered", "x.y", "* * * * *", "")])
    assert any(pid == "BC021" for pid, _ in preflight_problems("test"))


def test_preflight_never_prints_a_value(ready, capsys):
    ready.STRIPE_SECRET_KEY = "sk_live_" + "Z" * 30  # wrong mode: reported by shape, not by value
    with pytest.raises(SystemExit):
        call_command("preflight", "--mode", "test")
    out = capsys.readouterr().out
    assert "ZZZZZZZZ" not in out and GOOD["OPS_SECRET"] not in out
