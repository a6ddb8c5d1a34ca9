"""Helpers for the "database lost" drills: fill every console table, snapshot it, wipe it."""
from __future__ import annotations

from datetime import timedelta

from django.core import serializers
from django.core.management.color import no_style
from django.db import connection
from django.utils import timezone

from billing_console import models as core
from billing_console.ops.backups import backup_models
from billing_console.services import audit_log, cron_guard
from tests.core.factories import CustomerFactory, SubscribedCustomerFactory


def console_snapshot() -> dict[str, list[dict]]:
    """Every row of every console model, as serialized (stored values: ciphertexts, timestamps, pks)."""
    return {
        model._meta.label_lower: serializers.serialize("python", model._base_manager.order_by("pk"))
        for model in backup_models()
    }


def console_wipe() -> None:
    """What a lost database looks like after `migrate` (before its data migrations): every console
    table empty and its id sequence back at 1."""
    tables = [model._meta.db_table for model in backup_models()]
    deferrable = connection.vendor == "postgresql"  # SQLite checks its deferred keys at commit only
    with connection.cursor() as cursor:
        if deferrable:
            cursor.execute("SET CONSTRAINTS ALL IMMEDIATE")  # fire the test transaction's pending FK checks first
        for sql in connection.ops.sql_flush(no_style(), tables, reset_sequences=True, allow_cascade=False):
            cursor.execute(sql)
        if deferrable:
            cursor.execute("SET CONSTRAINTS ALL DEFERRED")


def populate_core() -> dict:
    """At least one row in every core model, including a vault column."""
    now = timezone.now()
    customer = SubscribedCustomerFactory(phone="+5511999999999", cohort="2026-a")
    other = CustomerFactory(access_state="soft_locked")
    attempt = core.CheckoutAttempt(plan="pro", price_id="price_sandbox_pro", email_hint="b***@example.com",
                                   customer=customer, status="paid")
    attempt.recovery_email = "buyer@example.com"
    attempt.save()
    core.WebhookEvent.objects.create(stripe_id="evt_drill1", type="invoice.paid", stripe_created=now,
                                     payload={"id": "evt_drill1", "data": {"object": {"amount_paid": 900}}},
                                     status="processed", processed_at=now)
    core.InboxWake.objects.create(requested_at=now)  # a drain queued when the backup was taken
    invoice = core.Invoice.objects.create(stripe_id="in_drill1", customer=customer, stripe_customer_id="cus_drill1",
                                          subscription_id=customer.subscription_id, currency="usd", total=900,
                                          amount_paid=900, period_end=now + timedelta(days=30), data={"k": [1, 2]})
    core.InvoiceEvent.objects.create(invoice=invoice, kind="email_sent", data={"provider_id": "m1"})
    core.ManageLinkDelivery.objects.create(customer=customer, reason="checkout", status="sent", attempts=1, sent_at=now)
    core.LedgerEntry.objects.create(account="cus_drill1", period="2026-04", total=900, currency="usd")
    run = core.ReconciliationRun.objects.create(status="drift", drift_count=1, checked={"invoices": 1})
    core.DriftItem.objects.create(run=run, kind="invoice_total", customer=other, stripe_id="in_drill1",
                                  expected="900", actual="800", delta=100, currency="usd")
    core.CheckoutSwitch.objects.create(pk=core.CheckoutSwitch.SINGLETON, is_open=False, reason="drill",
                                       changed_by="admin:support", changed_at=now)
    core.Cohort.objects.create(name="2026-a", started_at=now - timedelta(days=30), console_emails_invoices=False,
                               requires_account_review=True)
    core.CohortAccountReview.objects.create(customer=customer, cohort="2026-a", signed_off_by="support", signed_off_at=now)
    core.StripeImportCursor.objects.create(name="invoices", starting_after="in_drill0", pages=2, counts={"imported": 3})
    report = core.UsageReport.objects.create(customer=customer, meter="api_calls", window_start=0, event_timestamp=now,
                                             quantity=3, event_count=1, identifier="bcu_drill1", state="sent",
                                             claimed_at=now, sent_at=now)
    core.UsageEvent.objects.create(customer=customer, meter="api_calls", quantity=3, timestamp=now, window_start=0,
                                   idempotency_key="drill-1", received_at=now, report=report)
    with cron_guard("drill") as cron:
        cron.counts = {"rows": 3}
    audit_log(actor_type="admin", actor="support", action="customer.noted", target=customer, data={"why": "drill"})
    core.UnlinkedSubscription.objects.create(subscription_id="sub_drill_unlinked", stripe_customer_id="cus_drill2",
                                             status="active", data={"id": "sub_drill_unlinked"}, state_at=now)
    core.Dispute.objects.create(stripe_id="dp_drill1", charge_id="ch_drill1", customer=customer,
                                invoice_id="in_drill1", amount=900, currency="usd", reason="fraudulent",
                                status="needs_response", opened_at=now)
    core.Heartbeat.objects.create(name="qcluster", at=now, beats=3)
    core.Alert.objects.create(key="stripe_events_failed", title="1 Stripe event failed to apply.", last_seen_at=now,
                              resolved_at=now, opened_notified=True, resolved_notified=True)
    return {"customer": customer, "attempt": attempt}


def populate_console() -> dict:
    """At least one row in every model of every console app (core, licensing, deployments, dunning)."""
    from tests.deployments.factories import BundleReleaseFactory, DeploymentFactory, PublishVersionFactory
    from tests.dunning.factories import CustomerDunningFactory, DunningStepFactory, DunningStepLogFactory
    from tests.licensing.factories import DeviceActivationFactory, LicenseFactory

    made = populate_core()
    customer = made["customer"]
    licence = LicenseFactory(customer=customer, subscription_id=customer.subscription_id)
    DeviceActivationFactory(license=licence)
    deployment = DeploymentFactory(customer=customer, api_token="cfTokDrill" + "Z" * 30)
    BundleReleaseFactory()
    PublishVersionFactory(deployment=deployment, status="live")
    DunningStepLogFactory(status="failed", provider_response={"error": "instance disconnected"})
    CustomerDunningFactory(customer=made["customer"], policy=DunningStepFactory().policy)
    return {**made, "license": licence, "deployment": deployment}
