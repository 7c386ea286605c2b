# The change-log models moved here from the live app (issue 21: the bottom layer holds the
# change log that every layer writes or reads). Their tables exist already (live 0001): this
# migration only takes them into this app's state, and 0002 gives the tables this app's names.

import django.utils.timezone
from django.db import migrations, models

import foundation.models


class Migration(migrations.Migration):
    initial = True

    dependencies = [
        ("live", "0001_initial"),
    ]

    state_operations = [
        migrations.CreateModel(
            name="Change",
            fields=[
                ("seq", models.BigIntegerField(primary_key=True, serialize=False)),
                (
                    "kind",
                    models.CharField(
                        choices=[
                            ("tokens_revoked", "native tokens revoked"),
                            ("jtis_denied", "credential ids deny-listed"),
                            ("user_floor", "all credentials of a user revoked"),
                            ("user_disabled", "user deactivated"),
                            ("user_deleted", "user deleted"),
                            ("member_removed", "membership removed"),
                            ("room_deleted", "room deleted"),
                        ],
                        max_length=32,
                    ),
                ),
                ("data", models.JSONField()),
                ("created_at", models.DateTimeField(db_index=True, default=django.utils.timezone.now)),
            ],
            options={"ordering": ["seq"], "db_table": "live_change"},
        ),
        migrations.CreateModel(
            name="ChangeEffect",
            fields=[
                ("id", models.BigAutoField(auto_created=True, primary_key=True, serialize=False, verbose_name="ID")),
                ("seq", models.BigIntegerField(db_index=True)),
                ("process", models.CharField(max_length=200)),
                ("closed", models.IntegerField(default=0)),
                ("unsubscribed", models.IntegerField(default=0)),
                ("applied_at", models.DateTimeField(default=django.utils.timezone.now)),
            ],
            options={"db_table": "live_changeeffect"},
        ),
        migrations.CreateModel(
            name="ChangeHead",
            fields=[
                ("id", models.BigAutoField(auto_created=True, primary_key=True, serialize=False, verbose_name="ID")),
                ("seq", models.BigIntegerField(default=0)),
                ("epoch", models.CharField(default=foundation.models.new_epoch, max_length=32)),
            ],
            options={"verbose_name": "change log head", "db_table": "live_changehead"},
        ),
        migrations.CreateModel(
            name="ServerProcess",
            fields=[
                ("id", models.BigAutoField(auto_created=True, primary_key=True, serialize=False, verbose_name="ID")),
                ("name", models.CharField(help_text="host:pid", max_length=200, unique=True)),
                ("started_at", models.DateTimeField(default=django.utils.timezone.now)),
                ("seen_at", models.DateTimeField(db_index=True, default=django.utils.timezone.now)),
                ("epoch", models.CharField(blank=True, max_length=32)),
                ("applied_seq", models.BigIntegerField(default=0)),
                ("live_sockets", models.IntegerField(default=0)),
            ],
            options={"db_table": "live_serverprocess"},
        ),
    ]

    operations = [
        migrations.SeparateDatabaseAndState(state_operations=state_operations, database_operations=[]),
    ]
