"""Admin at scale (issue 15): find the tokens of a deleted SSH key, search device names fast.

- ``ssh_key_fingerprint``: filled when a key is deleted (tokens.key_history), with a partial
  index (only those rows), so "tokens minted by SHA256:…" stays an index lookup.
- On PostgreSQL, a trigram GIN index on ``UPPER(device_name::text)``: exactly the expression
  Django's ``icontains`` compares, so a substring search of the token list is an index scan
  instead of a scan of every token. It is built CONCURRENTLY (this migration is not atomic) so
  logins keep working while it builds. If the database role may not create the pg_trgm
  extension, the index is skipped with a message: search still works, only slower.
"""

from django.conf import settings
from django.db import migrations, models, transaction

TRIGRAM_INDEX = "tokens_nativetoken_device_trgm"


def create_trigram_index(apps, schema_editor):
    connection = schema_editor.connection
    if connection.vendor != "postgresql":
        return
    try:
        with transaction.atomic(using=connection.alias), connection.cursor() as cursor:
            cursor.execute("CREATE EXTENSION IF NOT EXISTS pg_trgm")
    except Exception as exc:  # no privilege, or the contrib package is missing
        print(f"\n  tokens.0004: pg_trgm unavailable ({exc}); device-name search will scan instead")
        return
    with connection.cursor() as cursor:
        cursor.execute(
            f"CREATE INDEX CONCURRENTLY IF NOT EXISTS {TRIGRAM_INDEX} ON tokens_nativetoken "
            "USING gin (UPPER(device_name::text) gin_trgm_ops)"
        )


def drop_trigram_index(apps, schema_editor):
    if schema_editor.connection.vendor == "postgresql":
        schema_editor.execute(f"DROP INDEX CONCURRENTLY IF EXISTS {TRIGRAM_INDEX}")


class Migration(migrations.Migration):
    atomic = False  # CREATE INDEX CONCURRENTLY cannot run in a transaction

    dependencies = [
        ("tokens", "0003_credential_floor"),
        migrations.swappable_dependency(settings.AUTH_USER_MODEL),
    ]

    operations = [
        migrations.AddField(
            model_name="nativetoken",
            name="ssh_key_fingerprint",
            # db_default: rows inserted in SQL (bench seeds, tests) need not name the column.
            field=models.CharField(blank=True, db_default="", default="", editable=False, max_length=60),
        ),
        migrations.AddIndex(
            model_name="nativetoken",
            index=models.Index(
                condition=models.Q(("ssh_key_fingerprint", ""), _negated=True),
                fields=["ssh_key_fingerprint"],
                name="token_deleted_key_fp",
            ),
        ),
        migrations.RunPython(create_trigram_index, drop_trigram_index, elidable=False),
    ]
