# The change-log models now belong to the foundation app (its 0001 takes them over, tables
# and all): only the state of this app forgets them; no table is touched.

from django.db import migrations


class Migration(migrations.Migration):
    dependencies = [
        ("live", "0001_initial"),
        ("foundation", "0001_initial"),
    ]

    operations = [
        migrations.SeparateDatabaseAndState(
            state_operations=[
                migrations.DeleteModel(name="Change"),
                migrations.DeleteModel(name="ChangeEffect"),
                migrations.DeleteModel(name="ChangeHead"),
                migrations.DeleteModel(name="ServerProcess"),
            ],
            database_operations=[],
        ),
    ]
