"""Stored provider responses keep only the status and the message id: earlier rows held Evolution's echo
of the message text, with a working manage link in it."""
from django.db import migrations, models


def scrub_provider_responses(apps, schema_editor):
    DunningStepLog = apps.get_model("dunning", "DunningStepLog")
    rows = DunningStepLog.objects.exclude(provider_response={}).only("pk", "provider_response").order_by("pk")
    batch = []
    for row in rows.iterator(chunk_size=500):
        old = row.provider_response if isinstance(row.provider_response, dict) else {}
        new = {"status": old["status"]} if "status" in old else {}
        body = old.get("body")
        key = body.get("key") if isinstance(body, dict) else None
        message_id = old.get("message_id") or (key.get("id") if isinstance(key, dict) else None)
        if message_id:
            new["message_id"] = str(message_id)
        if new != old:
            row.provider_response = new
            batch.append(row)
        if len(batch) >= 500:
            DunningStepLog.objects.bulk_update(batch, ["provider_response"])
            batch = []
    if batch:
        DunningStepLog.objects.bulk_update(batch, ["provider_response"])


class Migration(migrations.Migration):
    dependencies = [("dunning", "0002_default_policy")]

    operations = [
        migrations.AlterField(
            model_name="dunningsteplog", name="provider_response",
            field=models.JSONField(blank=True, default=dict, help_text="The provider's status and message id."),
        ),
        migrations.RunPython(scrub_provider_responses, migrations.RunPython.noop),
    ]
