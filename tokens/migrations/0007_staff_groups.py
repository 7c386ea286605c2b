"""The three staff groups of API.md, ready to assign (docs/operations-admin.md, "Staff roles").

Permissions are normally created by the post_migrate signal, which runs after every migration of
the `migrate` command: on a fresh database they do not exist yet when this runs. So this creates
the content types and permissions of the apps it needs first (Django's own create_permissions,
on the historical models), then the groups. An existing group of the same name keeps the
permissions it has and gains these. The reverse removes the three groups.

The definition is frozen here, as a migration must be; a later change to a group is a new
migration.
"""

from django.db import migrations

VIEW_EVERYTHING = [
    "tokens.view_nativetoken",
    "tokens.view_revokedtoken",
    "tokens.view_sshkey",
    "tokens.view_certificateauthority",
    "tokens.view_sshcertificate",
    "tokens.view_revocationlist",
    "rooms.view_room",
    "rooms.view_membership",
    "rooms.view_message",
    "auth.view_user",
]
GROUPS = {
    "native-viewers": VIEW_EVERYTHING,
    "native-revokers": VIEW_EVERYTHING
    + ["tokens.revoke_nativetoken", "tokens.add_revokedtoken", "auth.change_user"],
    "native-room-managers": VIEW_EVERYTHING
    + [
        "rooms.add_room",
        "rooms.change_room",
        "rooms.delete_room",
        "rooms.add_membership",
        "rooms.change_membership",
        "rooms.delete_membership",
    ],
}
APPS = ["auth", "tokens", "rooms"]


def create_groups(apps, schema_editor):
    from django.contrib.auth.management import create_permissions

    using = schema_editor.connection.alias if schema_editor else "default"
    for label in APPS:
        app_config = apps.get_app_config(label)
        previous = getattr(app_config, "models_module", None)  # None on historical apps: skipped
        app_config.models_module = previous or True
        try:
            create_permissions(app_config, verbosity=0, using=using, apps=apps)
        finally:
            app_config.models_module = previous
    Group = apps.get_model("auth", "Group")
    Permission = apps.get_model("auth", "Permission")
    for name, permissions in GROUPS.items():
        wanted = [tuple(permission.split(".")) for permission in permissions]
        found = list(
            Permission.objects.using(using)
            .filter(
                content_type__app_label__in={app for app, _ in wanted},
                codename__in={codename for _, codename in wanted},
            )
            .select_related("content_type")
        )
        by_name = {(p.content_type.app_label, p.codename): p for p in found}
        missing = [f"{app}.{codename}" for app, codename in wanted if (app, codename) not in by_name]
        if missing:
            raise RuntimeError(f"staff groups: permissions not found: {', '.join(missing)}")
        group, _ = Group.objects.using(using).get_or_create(name=name)
        group.permissions.add(*(by_name[key] for key in wanted))


def remove_groups(apps, schema_editor):
    using = schema_editor.connection.alias if schema_editor else "default"
    apps.get_model("auth", "Group").objects.using(using).filter(name__in=GROUPS).delete()


class Migration(migrations.Migration):
    dependencies = [
        ("tokens", "0006_revoke_permission"),
        ("rooms", "0001_initial"),
        ("auth", "0012_alter_user_first_name_max_length"),
        ("contenttypes", "0002_remove_content_type_name"),
    ]

    operations = [migrations.RunPython(create_groups, remove_groups)]
