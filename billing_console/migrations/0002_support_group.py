"""Create the "support" group (see billing_console/ops/support.py for what it may do and why)."""
from django.db import migrations


def ensure(apps, schema_editor):
    from billing_console.ops.support import support_group_ensure

    support_group_ensure(using=schema_editor.connection.alias)


class Migration(migrations.Migration):
    dependencies = [
        ("auth", "0012_alter_user_first_name_max_length"),
        ("contenttypes", "0002_remove_content_type_name"),
        ("billing_console", "0001_initial"),
    ]

    operations = [migrations.RunPython(ensure, migrations.RunPython.noop)]
