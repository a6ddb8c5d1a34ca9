"""setup_webhook_endpoint and sync_customer."""
import pytest
from django.core.management import CommandError, call_command

from billing_console.models import Customer
from tests.stripe.test_checkout_flow import start_checkout
from billing_console.stripe.gateway import client as stripe_api

pytestmark = pytest.mark.django_db


def _endpoints():
    return [e.to_dict() for e in stripe_api().v1.webhook_endpoints.list().data]


def test_setup_webhook_endpoint_registers_exactly_the_handled_types_and_prints_the_secret_once(emulator, capsys):
    from billing_console.stripe.dispatch import handled_event_types as handled_types
    from billing_console.stripe.endpoint import webhook_event_types

    call_command("setup_webhook_endpoint")
    out = capsys.readouterr().out
    [endpoint] = _endpoints()
    assert endpoint["url"] == "https://console.test/api/billing/webhook" and endpoint["status"] == "enabled"
    assert endpoint["api_version"] == emulator.api_version == "2026-05-27.dahlia"
    # The receivers' types (STRIPE_DJSTRIPE_SYNC is off in these tests, so no catalogue types), never "*".
    assert sorted(endpoint["enabled_events"]) == webhook_event_types() == handled_types()
    assert "invoice.payment_failed" in endpoint["enabled_events"] and "*" not in endpoint["enabled_events"]
    secret = emulator.store.table("webhook_endpoint.secrets")[endpoint["id"]]
    assert "created" in out and f"Signing secret: {secret}" in out and "STRIPE_WEBHOOK_SECRET" in out

    call_command("setup_webhook_endpoint")
    out = capsys.readouterr().out
    assert "unchanged" in out and secret not in out and len(_endpoints()) == 1


def test_setup_webhook_endpoint_repairs_a_disabled_short_endpoint_and_follows_a_new_site_url(emulator, stripe_settings,
                                                                                             capsys):
    call_command("setup_webhook_endpoint")
    [endpoint] = _endpoints()
    secret = emulator.store.table("webhook_endpoint.secrets")[endpoint["id"]]
    stripe_api().v1.webhook_endpoints.update(endpoint["id"], params={"disabled": True,
                                                                     "enabled_events": ["invoice.paid"]})
    stripe_settings.SITE_URL = "https://billing.example.com"
    capsys.readouterr()
    call_command("setup_webhook_endpoint")
    out = capsys.readouterr().out
    [after] = _endpoints()
    assert "updated" in out and "Signing secret" not in out
    assert after["id"] == endpoint["id"] and emulator.store.table("webhook_endpoint.secrets")[after["id"]] == secret  # same secret kept
    assert after["url"] == "https://billing.example.com/api/billing/webhook" and after["status"] == "enabled"
    assert sorted(after["enabled_events"]) == sorted(endpoint["enabled_events"])


def test_setup_webhook_endpoint_adds_the_mirrored_catalogue_types(emulator, stripe_settings):
    stripe_settings.STRIPE_DJSTRIPE_SYNC = ["product", "price"]
    call_command("setup_webhook_endpoint")
    [endpoint] = _endpoints()
    assert {"product.updated", "price.created", "price.deleted"} <= set(endpoint["enabled_events"])
    assert "plan.updated" not in endpoint["enabled_events"] and "charge.succeeded" not in endpoint["enabled_events"]


# The production default of STRIPE_DJSTRIPE_SYNC (billing_console/settings/base.py).
MIRROR_DEFAULT = ["customer", "invoice", "invoiceitem", "price", "product", "payment_method", "charge", "refund",
                  "coupon"]
# Types only dj-stripe's mirror needs: no receiver handles them.
MIRROR_ONLY = {"charge.succeeded", "charge.updated", "charge.failed", "charge.captured", "payment_method.attached",
               "payment_method.detached", "payment_method.updated", "payment_method.automatically_updated",
               "refund.failed", "coupon.created", "coupon.updated", "coupon.deleted", "invoiceitem.created",
               "invoiceitem.deleted", "customer.created", "customer.deleted", "invoice.payment_succeeded",
               "invoice.sent", "price.updated", "product.updated"}


def stripe_event_types() -> set[str]:
    """Every event type Stripe's own library lets an endpoint subscribe to."""
    import typing

    from stripe.params._webhook_endpoint_create_params import WebhookEndpointCreateParams

    return set(typing.get_args(typing.get_args(WebhookEndpointCreateParams.__annotations__["enabled_events"])[0]))


def test_the_default_mirror_subscribes_the_types_only_dj_stripe_needs(emulator, stripe_settings):
    from billing_console.stripe.dispatch import handled_event_types

    stripe_settings.STRIPE_DJSTRIPE_SYNC = MIRROR_DEFAULT
    call_command("setup_webhook_endpoint")
    [endpoint] = _endpoints()
    events = set(endpoint["enabled_events"])
    assert MIRROR_ONLY <= events and not MIRROR_ONLY & set(handled_event_types())
    assert set(handled_event_types()) <= events
    # Subscriptions and disputes come under "customer" and "charge", as dj-stripe's mirror selects them.
    assert {"customer.subscription.created", "charge.dispute.created", "charge.refund.updated"} <= events
    # Real names only, nothing the mirror cannot use, never "*".
    assert events <= stripe_event_types() and "*" not in events
    assert not {"invoice.upcoming", "plan.updated", "customer.source.created", "payment_intent.succeeded"} & events


def test_mirror_all_subscribes_every_mirrored_type_by_name_not_the_wildcard(emulator, stripe_settings):
    from billing_console.stripe.mirror import MIRROR_EVENT_TYPES, MIRRORED_OBJECTS

    assert set(MIRROR_EVENT_TYPES) == set(MIRRORED_OBJECTS)
    stripe_settings.STRIPE_DJSTRIPE_SYNC = ["*"]
    call_command("setup_webhook_endpoint")
    [endpoint] = _endpoints()
    every = {t for types in MIRROR_EVENT_TYPES.values() for t in types}
    assert every <= set(endpoint["enabled_events"]) <= stripe_event_types() - {"*"}


def test_an_endpoint_registered_by_an_older_version_gets_the_mirror_types_when_the_command_runs_again(
        emulator, stripe_settings, capsys):
    from billing_console.models import AuditEvent
    from billing_console.stripe.dispatch import handled_event_types
    from billing_console.stripe.endpoint import MARK_KEY, MARK_VALUE

    # What the previous release registered: the handled types and the catalogue types, nothing more.
    old = sorted(set(handled_event_types()) | {f"{o}.{v}" for o in ("product", "price", "plan")
                                               for v in ("created", "updated", "deleted")})
    created = stripe_api().v1.webhook_endpoints.create(params={
        "url": "https://console.test/api/billing/webhook", "enabled_events": old,
        "api_version": "2026-05-27.dahlia", "metadata": {MARK_KEY: MARK_VALUE}})
    stripe_settings.STRIPE_DJSTRIPE_SYNC = MIRROR_DEFAULT
    call_command("setup_webhook_endpoint")
    out = capsys.readouterr().out
    [after] = _endpoints()
    assert "updated" in out and "changed: enabled_events" in out and "Signing secret" not in out
    assert after["id"] == created.id and emulator.store.table("webhook_endpoint.secrets")[after["id"]] == created.secret
    assert MIRROR_ONLY <= set(after["enabled_events"]) and "plan.updated" not in after["enabled_events"]
    audit = AuditEvent.objects.get(action="webhook_endpoint.updated")
    assert audit.target_id == created.id and audit.data["changed"] == ["enabled_events"]
    call_command("setup_webhook_endpoint")
    assert "unchanged" in capsys.readouterr().out


def test_setup_webhook_endpoint_leaves_other_endpoints_alone(emulator):
    other = stripe_api().v1.webhook_endpoints.create(params={"url": "https://crm.example.com/hook",
                                                             "enabled_events": ["*"]})
    call_command("setup_webhook_endpoint")
    endpoints = {e["id"]: e for e in _endpoints()}
    assert len(endpoints) == 2 and endpoints[other.id]["enabled_events"] == ["*"]


def test_setup_webhook_endpoint_fails_clearly_when_stripe_refuses(emulator, stripe_settings):
    stripe_settings.STRIPE_SECRET_KEY = ""
    with pytest.raises(CommandError, match="STRIPE_SECRET_KEY"):
        call_command("setup_webhook_endpoint")


def test_nothing_is_written_to_djstripes_endpoint_table(emulator):
    from djstripe.models import WebhookEndpoint

    call_command("setup_webhook_endpoint")
    assert not WebhookEndpoint.objects.exists()


def test_sync_customer_by_email_applies_stripe_state(client, emulator, deliver, capsys):
    attempt, _ = start_checkout(client, email="sync@example.com")
    assert emulator.pay_checkout(attempt.stripe_session_id)["ok"]
    deliver(emulator.events)
    customer = Customer.objects.get(email="sync@example.com")
    stripe_api().v1.subscriptions.update(customer.subscription_id, params={"cancel_at_period_end": True})
    call_command("sync_customer", "SYNC@example.com")
    customer.refresh_from_db()
    assert customer.cancel_at_period_end
    assert "1 resynced, 0 failed" in capsys.readouterr().out


def test_sync_customer_unknown_is_an_error(stripe_settings):
    with pytest.raises(CommandError, match="No customer"):
        call_command("sync_customer", "nobody@example.com")
