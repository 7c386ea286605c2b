"""What a staff member holding a set of permissions may get from a walk (tests/admin_walk.py):
a page only with its permission (403 otherwise), a write to a table only with the permission for
that kind of write (accounts row by row), no page showing data of a model it may not view, no
page showing any piece of a stored digest or password hash, whoever asks; and, where granted, a
form or action that saves something.
"""

from django.apps import apps
from django.contrib import admin

from tests.admin_plan import NEVER, SUPERUSER, World, granted, perm, read
from tests.admin_walk import Outcome

# Extra ways a table may be written, beyond add_/change_/delete_ of its own model.
EXTRA_WRITES = {
    # revoking; deny-listing a native token's id; deleting a key leaves its fingerprint on its
    # tokens (tokens.key_history); deleting a user empties revoked_by (SET_NULL)
    ("tokens_nativetoken", "update"): {
        "tokens.revoke_nativetoken",
        "tokens.add_revokedtoken",
        "tokens.delete_sshkey",
        "auth.delete_user",
        # API.md: removing a CA revokes every token issued through it; a KRL what it names
        "tokens.delete_certificateauthority",
        "tokens.add_revocationlist",
    },
    ("tokens_nativetoken", "delete"): {"auth.delete_user"},  # a user's tokens go with the account
    ("tokens_revocationlist", "delete"): {"tokens.add_revocationlist"},  # a KRL replaces the last
    ("tokens_sshcertificate", "update"): {"tokens.delete_certificateauthority"},  # its CA: SET_NULL
    ("tokens_credentialfloor", "insert"): {"tokens.revoke_nativetoken"},
    ("tokens_credentialfloor", "update"): {"tokens.revoke_nativetoken"},
    ("tokens_credentialfloor", "delete"): {"auth.delete_user"},
    ("tokens_revokedtoken", "update"): {"auth.delete_user"},
    ("rooms_message_targets", "delete"): {"rooms.delete_message"},
    # Who holds which permission is a superuser's business (tokens.admin_users).
    ("auth_user_groups", "insert"): {SUPERUSER},
    ("auth_user_groups", "delete"): {SUPERUSER, "auth.delete_user", "auth.delete_group"},
    ("auth_user_user_permissions", "insert"): {SUPERUSER},
    ("auth_user_user_permissions", "delete"): {SUPERUSER, "auth.delete_user"},
    ("auth_group_permissions", "insert"): {SUPERUSER},
    ("auth_group_permissions", "delete"): {SUPERUSER, "auth.delete_group"},
}
# Written as a consequence of another permitted write (History, the change log), never alone.
CONSEQUENCE_APPS = {"live", "foundation"}
CONSEQUENCE_TABLES = {"django_admin_log"}
IGNORED_TABLES = {"django_session"}


# SQLite adds many-to-many links with INSERT OR IGNORE.
def write_allowed(table: str, verb: str, perms: frozenset) -> bool:
    extra = EXTRA_WRITES.get((table, verb), set())
    if extra & perms:
        return True
    model = TABLES.get(table)
    if model is not None and model in admin.site._registry:
        own = perm(model, {"insert": "add", "update": "change", "delete": "delete"}[verb])
        return own in perms and own not in NEVER
    return False


def user_row_problems(before: dict, after: dict, perms: frozenset) -> list[str]:
    """auth_user row by row: admin access (is_staff, is_superuser) and accounts that have it
    are changed by superusers only; other changes need the user permission of their kind."""
    problems = []
    for pk in before.keys() | after.keys():
        old, new = before.get(pk), after.get(pk)
        if old == new:
            continue
        privileged = (old and (old[4] or old[5])) or (new and (new[4] or new[5]))
        kind = "add" if old is None else "delete" if new is None else "change"
        if privileged and SUPERUSER not in perms:
            problems.append(f"changed account {pk} with admin access ({kind})")
        elif f"auth.{kind}_user" not in perms and SUPERUSER not in perms:
            problems.append(f"{kind} of account {pk} without auth.{kind}_user")
    return problems


def visible(models, perms: frozenset) -> bool:
    return any(granted(read(model), perms) for model in models)


def problems(outcome: Outcome, perms: frozenset, world: World) -> list[str]:
    """What ``outcome`` shows or does beyond what ``perms`` grant (empty when all is well)."""
    probe, found = outcome.probe, []
    ok = probe.needs is None or granted(probe.needs, perms)
    if probe.needs is not None:
        if probe.kind in ("page", "lookup", "form") and not ok and outcome.status != 403:
            found.append(f"answered {outcome.status}, not 403, without the permission")
        if probe.kind in ("page", "lookup") and ok and outcome.status != 200:
            found.append(f"answered {outcome.status} although granted")
        if probe.kind == "form" and ok and probe.method == "POST" and probe.writes and outcome.status != 302:
            found.append(f"answered {outcome.status}, not a redirect after saving, although granted")
        # (Granted, an action may ask first or act at once: the write oracle judges what it did.)
        asked = outcome.status == 200 and not any(t.endswith("change_list.html") for t in outcome.templates)
        if probe.kind == "preview" and not ok and asked:
            found.append("the action's confirmation page was shown")
    consequential = set()
    for table, verb in sorted(outcome.writes):
        if table in IGNORED_TABLES:
            continue
        owner = TABLES.get(table)
        if table in CONSEQUENCE_TABLES or (owner is not None and owner._meta.app_label in CONSEQUENCE_APPS):
            consequential.add(table)
            continue
        if table == "auth_user":
            found += user_row_problems(outcome.users_before, outcome.users_after, perms)
        elif SUPERUSER not in perms and not write_allowed(table, verb, perms):
            found.append(f"{verb} on {table} without the permission for it")
    primary = {t for t, _ in outcome.writes} - consequential - IGNORED_TABLES
    if consequential and not primary:
        found.append(f"wrote {sorted(consequential)} although nothing else changed")
    if probe.writes and ok and probe.model is not None and not primary:
        found.append("changed nothing although granted")
    for text, models in world.markers.items():
        if text in outcome.page and not (SUPERUSER in perms or visible(models, perms)):
            found.append(f"showed {text!r}, data of {sorted(m.__name__ for m in models)}")
    for piece in world.secrets:
        if piece in outcome.page:
            found.append(f"showed {piece!r}, a piece of a stored digest or hash")
    return [f"{probe.label} ({probe.method} {probe.path}): {problem}" for problem in found]


def relevant(base: Outcome, base_perms: frozenset, perms: frozenset) -> bool:
    """Whether a principal holding ``perms`` could fare otherwise than the one holding
    ``base_perms`` (fewer: nothing, or a group's that ``perms`` contains) fared in ``base``.

    A walk records which permissions each request asked about; the code's path depends only on
    the answers. A principal whose added permissions were not asked about gets the same answers,
    so walks the same path to the same page and writes: nothing to learn, and what was allowed
    to the smaller set is allowed to the larger. Walked anyway when the oracle expects the added
    permissions to change the answer (in case the code forgot to ask)."""
    added = perms - base_perms
    consulted = base.consulted
    if "*" in consulted:
        return bool(added)
    if base.probe.needs is not None and granted(base.probe.needs, perms) != granted(
        base.probe.needs, base_perms
    ):
        return True
    return any(p in consulted or f"{p.split('.')[0]}.*" in consulted for p in added)


def _tables() -> dict:
    return {model._meta.db_table: model for model in apps.get_models(include_auto_created=True)}


TABLES = _tables()
