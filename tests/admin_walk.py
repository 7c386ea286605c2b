"""A staff member walking the plan of tests/admin_plan.py.

``walk`` makes the requests as one logged-in client, each inside a savepoint that is rolled back
(every request meets the same world), and records for each: the status, the page, the rows it
wrote (by table and kind, read from the SQL it ran) and the permissions the code asked about
(``has_perm`` and friends).
"""

import logging
import re
from contextlib import contextmanager
from dataclasses import dataclass

from django.conf import settings
from django.contrib.admin import AdminSite
from django.contrib.auth import get_user_model
from django.db import connection, transaction

from tests.admin_plan import Probe

# SQLite adds many-to-many links with INSERT OR IGNORE.
WRITE_SQL = re.compile(r'^\s*(INSERT(?:\s+OR\s+\w+)?\s+INTO|UPDATE|DELETE\s+FROM)\s+"?(\w+)"?', re.IGNORECASE)


@dataclass
class Outcome:
    probe: Probe
    status: int
    page: str
    templates: list
    writes: set  # {(table, "insert" | "update" | "delete")}
    users_before: dict
    users_after: dict
    consulted: set


class WriteRecorder:
    """Every INSERT, UPDATE and DELETE that touched a row, by table, from the SQL itself."""

    def __init__(self):
        self.writes = set()

    def __call__(self, execute, sql, params, many, context):
        result = execute(sql, params, many, context)
        match = WRITE_SQL.match(sql)
        # SQLite counts the rows of INSERT ... RETURNING only once they are fetched.
        if match and (context["cursor"].rowcount != 0 or " RETURNING " in sql.upper()):
            self.writes.add((match.group(2), match.group(1).split()[0].lower()))
        return result


@contextmanager
def recording_permission_checks(consulted: list):
    """Note every permission the code asks about; "app.*" for a module, "*" for all of them.

    Not those the app list asks (the index and app pages, and the sidebar of every page): it
    asks about every model on every page, and shows model names and links, never a row. It is
    checked where it is the page (the index and app pages), by the walks that take every request
    (nobody, the groups, the superuser); counted everywhere, it would make every permission
    relevant to every page (tests/admin_oracles.relevant)."""
    User = get_user_model()  # noqa: N806
    paused = [0]
    build_app_dict = AdminSite._build_app_dict

    def app_list_unrecorded(self, request, label=None):
        paused[0] += 1
        try:
            return build_app_dict(self, request, label)
        finally:
            paused[0] -= 1

    originals = {
        name: getattr(User, name)
        for name in (
            "has_perm",
            "has_module_perms",
            "get_all_permissions",
            "get_user_permissions",
            "get_group_permissions",
        )
    }

    def note(question):
        if not paused[0]:
            consulted.append(question)

    def has_perm(self, perm, obj=None):
        note(perm)
        return originals["has_perm"](self, perm, obj)

    def has_module_perms(self, app_label):
        note(f"{app_label}.*")
        return originals["has_module_perms"](self, app_label)

    def everything(name):
        def read_all(self, obj=None):
            note("*")
            return originals[name](self, obj)

        return read_all

    User.has_perm, User.has_module_perms = has_perm, has_module_perms
    for name in ("get_all_permissions", "get_user_permissions", "get_group_permissions"):
        setattr(User, name, everything(name))
    AdminSite._build_app_dict = app_list_unrecorded
    try:
        yield
    finally:
        for name, original in originals.items():
            setattr(User, name, original)
        AdminSite._build_app_dict = build_app_dict


def user_rows() -> dict:
    columns = (
        "username",
        "password",
        "email",
        "is_active",
        "is_staff",
        "is_superuser",
        "first_name",
        "last_name",
    )
    return {row[0]: row[1:] for row in get_user_model().objects.values_list("pk", *columns)}


@contextmanager
def quiet_refusals():
    """Django logs every 403 and 400 with its traceback: thousands of them here, by design."""
    loggers = [logging.getLogger(name) for name in ("django.request", "django.security")]
    levels = [logger.level for logger in loggers]
    for logger in loggers:
        logger.setLevel(logging.CRITICAL)
    try:
        yield
    finally:
        for logger, level in zip(loggers, levels, strict=True):
            logger.setLevel(level)


def walk(client, plan: list[Probe]) -> list[Outcome]:
    with quiet_refusals():
        return _walk(client, plan)


def _walk(client, plan: list[Probe]) -> list[Outcome]:
    outcomes = []
    users_before = user_rows()
    # A request may cycle the session key (Django does on any password change); the new
    # session row is rolled back with the rest, so the client goes back to its login session.
    session = client.cookies[settings.SESSION_COOKIE_NAME].value
    for probe in plan:
        recorder, consulted = WriteRecorder(), []
        with transaction.atomic():
            with connection.execute_wrapper(recorder), recording_permission_checks(consulted):
                if probe.method == "GET":
                    response = client.get(probe.path)
                else:
                    for value in probe.data.values():
                        if hasattr(value, "seek"):
                            value.seek(0)  # an uploaded file, posted again by each role
                    response = client.post(probe.path, probe.data)
            users_after = user_rows() if {t for t, _ in recorder.writes} & {"auth_user"} else users_before
            transaction.set_rollback(True)
        client.cookies[settings.SESSION_COOKIE_NAME] = session
        page = response.content.decode(errors="replace") if response.status_code == 200 else ""
        templates = [t.name for t in getattr(response, "templates", []) if t.name]
        outcomes.append(
            Outcome(
                probe,
                response.status_code,
                page,
                templates,
                recorder.writes,
                users_before,
                users_after,
                set(consulted),
            )
        )
    return outcomes
