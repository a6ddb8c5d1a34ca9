import pytest
from django.core.management import call_command

from billing_console.ops import scheduling
from billing_console.ops.checks import preflight_problems
from tests.stripe.conftest import API_KEY, emulator, stripe_settings  # noqa: F401
from tests.deployments.conftest import bundles  # noqa: F401
from billing_console.stripe.endpoint import webhook_endpoint_sync
from billing_console.stripe.gateway import client as stripe_api

GOOD = {
    "STRIPE_SECRET_KEY": API_KEY,
    "STRIPE_WEBHOOK_SECRET": "whsec_" + "b" * 30,
    "CLOUD_MASTER_KEY": "c" * 32,
    "LICENSE_SIGNING_KEY": "d" * 44,
    "HELM_BUNDLE_MANIFEST_URL": "https://bundles.example.com/manifest.json",
    "EMAIL_BACKEND": "django.core.mail.backends.smtp.EmailBackend",
    "OPS_SECRET": "e" * 32,
    "STRIPE_LIVE_MODE": False,
    "DEBUG": False,
    "SUPPORT_EMAIL": "support@example.com",
    "TRUSTED_PROXY_HOPS": 0,
}


@pytest.fixture
def ready(settings, db, monkeypatch, emulator, bundles, tmp_path):  # noqa: F811
    manifest = settings.HELM_BUNDLE_MANIFEST_URL
    for name, value in GOOD.items():
        setattr(settings, name, value)
    settings.HELM_BUNDLE_MANIFEST_URL = manifest  # the bundle host's, naming v1.0.0
    settings.STORAGES = {**settings.STORAGES, "default": {"BACKEND": "django.core.files.storage.FileSystemStorage",
                                                           "OPTIONS": {"location": str(tmp_path / "media")}}}
    from billing_console.ops.backups import backup_export

    backup_export()
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


def ids(mode="test"):
    return {pid for pid, _ in preflight_problems(mode)}


def test_a_manifest_without_a_release_blocks(ready, tmp_path):
    empty = tmp_path / "manifest.json"
    empty.write_text("{}")
    ready.HELM_BUNDLE_MANIFEST_URL = empty.as_uri()
    problems = dict(preflight_problems("test"))
    assert "BC041" in problems and "version" in problems["BC041"]


def test_no_backup_or_an_old_one_blocks(ready, tmp_path):
    import os
    import time

    from django.core.files.storage import default_storage

    _, files = default_storage.listdir("backups")
    path = default_storage.path(f"backups/{files[0]}")
    old = time.time() - 27 * 3600
    os.utime(path, (old, old))
    problems = dict(preflight_problems("test"))
    assert "27 hours old" in problems["BC042"]
    os.utime(path, (old + 2 * 3600, old + 2 * 3600))  # 25 hours: fine
    assert "BC042" not in ids()
    default_storage.delete(f"backups/{files[0]}")
    assert "No backup has been taken" in dict(preflight_problems("test"))["BC042"]


def test_live_mode_needs_an_https_site_url(ready):
    ready.SITE_URL = "http://console.example.com"
    assert "BC017" in ids("live") and "BC017" not in ids("test")
    ready.SITE_URL = "https://console.example.com"
    assert "BC017" not in ids("live")


def test_no_active_billing_portal_configuration_blocks(ready, monkeypatch):
    from billing_console.stripe import gateway

    assert "BC043" not in ids()  # the sandbox has its default configuration
    real = gateway.list_page
    monkeypatch.setattr(gateway, "list_page", lambda resource, params: {"data": [], "has_more": False}
                        if resource == "billing_portal_configurations" else real(resource, params))
    assert "Customer Portal configuration" in dict(preflight_problems("test"))["BC043"]


def test_the_portal_configurations_are_read_from_stripe(ready, emulator):  # noqa: F811
    from billing_console.stripe import gateway

    page = gateway.list_page("billing_portal_configurations", {"active": True, "limit": 1})
    assert page["data"] and page["data"][0]["id"].startswith("bpc_")


def test_a_missing_support_inbox_blocks(ready):
    ready.SUPPORT_EMAIL = ""
    assert "BC018" in ids()


@pytest.mark.parametrize("proxy_header, hops, blocked", [
    (("HTTP_X_FORWARDED_PROTO", "https"), 0, True), (("HTTP_X_FORWARDED_PROTO", "https"), 1, False),
    (None, 0, False), (None, 2, True),
])
def test_proxy_hops_must_match_the_proxy_header(ready, proxy_header, hops, blocked):
    ready.SECURE_PROXY_SSL_HEADER = proxy_header
    ready.TRUSTED_PROXY_HOPS = hops
    assert ("BC019" in ids()) is blocked


def test_manage_py_check_calls_no_network(ready, monkeypatch):
    """`check` runs on every start: the Stripe, manifest and backup checks are preflight's only."""
    from billing_console.ops import checks

    def boom(*a, **k):
        raise AssertionError("network or storage used by manage.py check")

    monkeypatch.setattr(checks, "_portal_configuration_problems", boom)
    monkeypatch.setattr(checks, "_backup_problems", boom)
    monkeypatch.setattr(checks, "_app_checks", [boom])
    assert checks.billing_configuration_check(None) == []


def test_support_email_is_the_reply_to_and_shown_on_the_pages(ready, client):
    from django.core import mail

    from billing_console.manage_links import manage_link_deliver
    from billing_console.models import ManageLinkDelivery
    from django.utils import timezone
    from tests.core.factories import CustomerFactory

    delivery = ManageLinkDelivery.objects.create(customer=CustomerFactory(), reason="support",
                                                 next_attempt_at=timezone.now())
    ready.EMAIL_BACKEND = "django.core.mail.backends.locmem.EmailBackend"
    manage_link_deliver(delivery_id=delivery.pk)
    assert mail.outbox[-1].reply_to == ["support@example.com"]
    assert "mailto:support@example.com" in client.get("/recover").content.decode()
def _endpoint_ids(mode="test"):
    return {pid: msg for pid, msg in preflight_problems(mode) if pid.startswith("BC05")}


def _our_endpoint():
    return next(e for e in stripe_api().v1.webhook_endpoints.list().data
                if e.url == "https://console.example.com/api/billing/webhook")


def test_preflight_blocks_when_stripe_has_no_endpoint_for_us(ready, capsys):
    stripe_api().v1.webhook_endpoints.delete(_our_endpoint().id)
    assert list(_endpoint_ids()) == ["BC051"]
    with pytest.raises(SystemExit):
        call_command("preflight", "--mode", "test")
    assert "no webhook endpoint at https://console.example.com/api/billing/webhook" in capsys.readouterr().out


def test_preflight_blocks_a_disabled_endpoint(ready):
    stripe_api().v1.webhook_endpoints.update(_our_endpoint().id, params={"disabled": True})
    assert list(_endpoint_ids()) == ["BC052"]


def test_preflight_blocks_our_endpoint_on_another_url(ready):
    stripe_api().v1.webhook_endpoints.update(_our_endpoint().id, params={"url": "https://old.example.com/api/billing/webhook"})
    problems = _endpoint_ids()
    assert list(problems) == ["BC053"] and "https://old.example.com/api/billing/webhook" in problems["BC053"]


def test_preflight_blocks_an_endpoint_missing_a_handled_type(ready):
    endpoint = _our_endpoint()
    stripe_api().v1.webhook_endpoints.update(endpoint.id, params={
        "enabled_events": [t for t in endpoint.enabled_events if t != "invoice.payment_failed"]})
    problems = _endpoint_ids()
    assert list(problems) == ["BC054"] and "invoice.payment_failed" in problems["BC054"]


MIRRORED = ["customer", "invoice", "invoiceitem", "price", "product", "payment_method", "charge", "refund", "coupon"]


def test_an_endpoint_short_of_a_mirror_only_type_is_a_warning_not_a_blocker(ready, capsys):
    """charge.succeeded only feeds dj-stripe's mirror: without it the console still applies everything it acts on."""
    ready.STRIPE_DJSTRIPE_SYNC = MIRRORED
    webhook_endpoint_sync()
    endpoint = _our_endpoint()
    assert "charge.succeeded" in endpoint.enabled_events
    stripe_api().v1.webhook_endpoints.update(endpoint.id, params={
        "enabled_events": [t for t in endpoint.enabled_events if t not in ("charge.succeeded", "payment_method.attached")]})
    warnings = []
    assert [p for p in preflight_problems("test", warnings=warnings) if p[0].startswith("BC05")] == []
    [(pid, message)] = warnings
    assert pid == "BC056" and "charge.succeeded, payment_method.attached" in message and "mirror" in message
    call_command("preflight", "--mode", "test")  # no SystemExit: GO
    out = capsys.readouterr().out
    assert "[BC056] warning:" in out and out.strip().endswith("GO") and "NO_GO" not in out


def test_a_missing_handled_type_still_blocks_beside_missing_mirror_types(ready):
    ready.STRIPE_DJSTRIPE_SYNC = MIRRORED
    webhook_endpoint_sync()
    endpoint = _our_endpoint()
    stripe_api().v1.webhook_endpoints.update(endpoint.id, params={
        "enabled_events": [t for t in endpoint.enabled_events if t not in ("invoice.payment_failed", "charge.updated")]})
    warnings = []
    problems = {pid: msg for pid, msg in preflight_problems("test", warnings=warnings) if pid.startswith("BC05")}
    assert list(problems) == ["BC054"] and "invoice.payment_failed" in problems["BC054"]
    assert "charge.updated" not in problems["BC054"]
    assert [pid for pid, _ in warnings] == ["BC056"] and "charge.updated" in warnings[0][1]


def test_an_endpoint_set_up_with_the_mirror_on_has_nothing_to_say(ready):
    ready.STRIPE_DJSTRIPE_SYNC = ["*"]
    webhook_endpoint_sync()
    warnings = []
    assert not [p for p in preflight_problems("test", warnings=warnings) if p[0].startswith("BC05")] and not warnings


def test_preflight_blocks_in_live_mode_too(ready):
    stripe_api().v1.webhook_endpoints.delete(_our_endpoint().id)
    assert "BC051" in _endpoint_ids("live")


def test_a_wildcard_endpoint_at_our_url_is_accepted(ready):
    stripe_api().v1.webhook_endpoints.update(_our_endpoint().id, params={"enabled_events": ["*"]})
    assert _endpoint_ids() == {}


def test_preflight_reports_an_unreachable_stripe(ready, emulator):  # noqa: F811
    emulator.stop()
    ready.STRIPE_MAX_RETRIES = 0
    assert list(_endpoint_ids()) == ["BC050"]


def test_manage_py_check_never_asks_stripe(ready, monkeypatch):
    from billing_console.ops.checks import billing_configuration_check

    def boom():
        raise AssertionError("check must not call Stripe")

    monkeypatch.setattr("billing_console.stripe.gateway.webhook_endpoints_list", boom)
    assert billing_configuration_check(None) == []
