import pytest
from django.core.management import call_command

from billing_console.ops import scheduling
from billing_console.ops.checks import preflight_problems
from billing_console.stripe.endpoint import webhook_endpoint_sync
from billing_console.stripe.gateway import client as stripe_api
from sandbox.stripe import StripeEmulator

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
def stripe_emu(settings):
    """The sandbox's Stripe (webhook endpoints included); preflight reads the endpoints from it."""
    emu = StripeEmulator()
    emu.start()
    settings.STRIPE_API_HOST = emu.url
    yield emu
    emu.stop()


@pytest.fixture
def ready(settings, db, monkeypatch, stripe_emu):
    for name, value in GOOD.items():
        setattr(settings, name, value)
    settings.PLANS = {**settings.PLANS, "pro": {**settings.PLANS["pro"], "price_id": "price_123"}}
    settings.SITE_URL = "https://console.example.com"
    # Migrations are not applied in the test database (--nomigrations): judge the rest.
    monkeypatch.setattr("billing_console.ops.checks._migration_problems", lambda: [])
    scheduling.schedules_sync()
    webhook_endpoint_sync()
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
    assert "STRIPE_WEBHOOK_SECRET is not set" in out and "CLOUD_MASTER_KEY" in out and "NO_GO (2 blocker(s))" in out


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


def _endpoint_ids(mode="test"):
    return {pid: msg for pid, msg in preflight_problems(mode) if pid.startswith("BC04")}


def _our_endpoint():
    return next(e for e in stripe_api().v1.webhook_endpoints.list().data
                if e.url == "https://console.example.com/api/billing/webhook")


def test_preflight_blocks_when_stripe_has_no_endpoint_for_us(ready, capsys):
    stripe_api().v1.webhook_endpoints.delete(_our_endpoint().id)
    assert list(_endpoint_ids()) == ["BC041"]
    with pytest.raises(SystemExit):
        call_command("preflight", "--mode", "test")
    assert "no webhook endpoint at https://console.example.com/api/billing/webhook" in capsys.readouterr().out


def test_preflight_blocks_a_disabled_endpoint(ready):
    stripe_api().v1.webhook_endpoints.update(_our_endpoint().id, params={"disabled": True})
    assert list(_endpoint_ids()) == ["BC042"]


def test_preflight_blocks_our_endpoint_on_another_url(ready):
    stripe_api().v1.webhook_endpoints.update(_our_endpoint().id, params={"url": "https://old.example.com/api/billing/webhook"})
    problems = _endpoint_ids()
    assert list(problems) == ["BC043"] and "https://old.example.com/api/billing/webhook" in problems["BC043"]


def test_preflight_blocks_an_endpoint_missing_a_handled_type(ready):
    endpoint = _our_endpoint()
    stripe_api().v1.webhook_endpoints.update(endpoint.id, params={
        "enabled_events": [t for t in endpoint.enabled_events if t != "invoice.payment_failed"]})
    problems = _endpoint_ids()
    assert list(problems) == ["BC044"] and "invoice.payment_failed" in problems["BC044"]


def test_preflight_blocks_in_live_mode_too(ready):
    stripe_api().v1.webhook_endpoints.delete(_our_endpoint().id)
    assert "BC041" in _endpoint_ids("live")


def test_a_wildcard_endpoint_at_our_url_is_accepted(ready):
    stripe_api().v1.webhook_endpoints.update(_our_endpoint().id, params={"enabled_events": ["*"]})
    assert _endpoint_ids() == {}


def test_preflight_reports_an_unreachable_stripe(ready, stripe_emu):
    stripe_emu.stop()
    ready.STRIPE_MAX_RETRIES = 0
    assert list(_endpoint_ids()) == ["BC040"]


def test_manage_py_check_never_asks_stripe(ready, monkeypatch):
    from billing_console.ops.checks import billing_configuration_check

    def boom():
        raise AssertionError("check must not call Stripe")

    monkeypatch.setattr("billing_console.stripe.gateway.webhook_endpoints_list", boom)
    assert billing_configuration_check(None) == []
