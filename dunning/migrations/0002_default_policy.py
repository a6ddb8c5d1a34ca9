"""The default dunning policy (FAIL_IMMEDIATE, SOFT_D+1, SOFT_D+3, SOFT_D+7, FINAL_D+10; soft lock after 3
days, hard lock after 14). The service does the work so tests, which skip migrations, can call it too."""
from django.db import migrations


def ensure_default_policy(apps, schema_editor):
    from dunning.services import dunning_policy_ensure_default

    dunning_policy_ensure_default()


class Migration(migrations.Migration):
    dependencies = [
        ("dunning", "0001_initial"),
        ("billing_console", "0001_initial"),
    ]

    operations = [migrations.RunPython(ensure_default_policy, migrations.RunPython.noop)]
