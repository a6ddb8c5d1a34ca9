"""Every cron of the console, in one list (UTC). `manage.py setup_schedules` makes django-q2 match it.

Each entry: name (unique), the task's dotted path, and a cron expression. Tasks record a CronRun
through `billing_console.services.cron_guard`, so two starts never overlap.
"""
from typing import NamedTuple

from django.conf import settings


class Cron(NamedTuple):
    name: str
    func: str
    cron: str
    doc: str


SCHEDULES: list[Cron] = [
    # Each app adds its crons here; keep names stable, setup_schedules keys on them.
    Cron("push_deployments", "deployments.tasks.push_deployments", "0 * * * *",
         "Push the wanted bundle release to every entitled, unpaused deployment that is behind."),
    Cron("enforce_token_rotation", "deployments.tasks.enforce_token_rotation", "*/15 * * * *",
         "Pause deployments whose Cloudflare token was not rotated by TOKEN_ROTATION_DEADLINE_DAYS after notify_token_rotation."),
    Cron("backup_export", "billing_console.ops.backups.backup_export_cron", "30 3 * * *",
         "daily backup of the console's tables to storage; keeps BACKUP_RETENTION files"),
    Cron("invoice_delivery_retry", "billing_console.invoicing.tasks.invoice_delivery_retry", "*/5 * * * *",
         "Render and email invoices whose delivery failed and whose backoff has passed."),
    Cron("manage_link_delivery_retry", "billing_console.stripe.tasks.manage_link_delivery_retry", "*/5 * * * *",
         "Email manage links whose send failed and whose backoff has passed (after checkout, /recover, support)."),
    Cron("reconcile", "billing_console.invoicing.tasks.reconcile", "0 6 * * *",
         "Compare Stripe's view with the console's; every difference becomes a DriftItem."),
    Cron("daily_health_report", "billing_console.invoicing.tasks.daily_health_report", "0 7 * * *",
         "Log the ops summary; email OPS_EMAIL when something is wrong."),
    Cron("stripe_events_retry", "billing_console.stripe.tasks.stripe_events_retry", "* * * * *",
         "Apply Stripe events whose retry is due, whose worker died, or whose enqueue was lost."),
    Cron("stripe_events_mirror", "billing_console.stripe.tasks.stripe_events_mirror", "* * * * *",
         "Mirror applied Stripe events into dj-stripe's tables when the on-commit kick was lost."),
    Cron("stripe_events_prune", "billing_console.stripe.tasks.stripe_events_prune", "40 3 * * *",
         "Delete applied Stripe events older than STRIPE_EVENT_RETENTION_DAYS, in batches (0 keeps them)."),
    Cron("dunning_send", "dunning.tasks.dunning_send", "*/10 * * * *",
         "queue due dunning steps, send them (each once), retry failures with backoff"),
    Cron("enforce_access_policies", "dunning.tasks.enforce_access_policies", "15 * * * *",
         "soft/hard lock customers past their policy's days, lift locks no unpaid case explains"),
    Cron("checkout_preflight_guard", "billing_console.stripe.switch.checkout_preflight_guard_cron", "*/10 * * * *",
         "In live mode, close checkout when preflight is NO_GO (reopening is a person's decision)."),
    Cron("analytics_snapshot", "billing_console.analytics.snapshot.analytics_snapshot_cron", "10 2 * * *",
         "Recompute the analytics page's monthly figures (MRR, subscribers, churn, checkouts) from the invoices."),
    Cron("analytics_hourly", "billing_console.analytics.snapshot.analytics_hourly_cron", "2 * * * *",
         "Recompute the analytics page's hourly operations figures (Stripe events, pushes) of the last 7 days."),
    Cron("heartbeat", "billing_console.ops.heartbeat.heartbeat_cron", "* * * * *",
         "Prove the task cluster executes tasks: /health reports the heartbeat's age, ?deep=1 turns 503 when stale."),
    Cron("alert_check", "billing_console.ops.alerts.alert_check_cron", "*/10 * * * *",
         "Find late or failing crons, failed or waiting Stripe events, undelivered invoices, failure spikes; "
         "announce each problem once when it starts and once when it ends (OPS_EMAIL, ALERT_WEBHOOK_URL)."),
    Cron("report_usage", "billing_console.invoicing.usage.usage_report_usage_cron", settings.USAGE_REPORT_SCHEDULE,
         "Claim unreported usage into windows and send their totals to Stripe's meters (each once)."),
]
