# The moved tables take this app's names (live_change -> foundation_change, ...).

from django.db import migrations


class Migration(migrations.Migration):
    dependencies = [
        ("foundation", "0001_initial"),
        ("live", "0002_change_log_moved_to_foundation"),
    ]

    operations = [
        migrations.AlterModelTable(name="change", table=None),
        migrations.AlterModelTable(name="changeeffect", table=None),
        migrations.AlterModelTable(name="changehead", table=None),
        migrations.AlterModelTable(name="serverprocess", table=None),
    ]
