"""The customer's own pause gets its own origin, so a customer can never lift a pause support set. Pauses
already recorded as manual are split by who set them (the latest "deployment.paused" audit event)."""
from django.db import migrations, models


def split_manual_pauses(apps, schema_editor):
    Deployment = apps.get_model("deployments", "Deployment")
    AuditEvent = apps.get_model("billing_console", "AuditEvent")
    for pk in Deployment.objects.filter(paused=True, paused_by="manual").values_list("pk", flat=True).iterator():
        last = (AuditEvent.objects.filter(action="deployment.paused", target_type="deployments.deployment",
                                          target_id=str(pk)).order_by("-at", "-pk").first())
        if last is not None and last.actor_type == "customer":
            Deployment.objects.filter(pk=pk, paused_by="manual").update(paused_by="customer")


class Migration(migrations.Migration):
    dependencies = [("deployments", "0002_paused_by_no_token"), ("billing_console", "0003_webhook_event_indexes_customer_state_at")]

    operations = [
        migrations.AlterField(
            model_name="deployment", name="paused_by",
            field=models.CharField(blank=True, choices=[("", "-"), ("manual", "Support"), ("customer", "The customer (manage page)"),
                                                        ("auto_lock", "Automatic (customer locked or canceled)"),
                                                        ("auth_failures", "Automatic (token rejected repeatedly)"),
                                                        ("no_token", "Waiting for an API token (restored deployment)")],
                                   default="", max_length=16),
        ),
        migrations.RunPython(split_manual_pauses, migrations.RunPython.noop),
    ]
