"""Admin pages at scale: server time of the list, search and change pages an operator uses.

Seeds (in SQL, generate_series on PostgreSQL, a recursive CTE on SQLite: an ORM save per row
would take longer than everything measured) 1M native tokens over 100k users, a room of 10k
members with 10M messages (issue 15's scale), 100k deny-list entries (--quick: a tenth, and the
room keeps 10k members), then loads each page in-process with Django's test client as a logged-in superuser:
a warm-up, then the median of REPEATS, from request to rendered response (the server's share
of an operator's wait; the network and the browser come on top). Target: 0.5 s per page
(issue 15), with the number of queries each page made.

    python -m bench admin --backend postgres [--quick]
"""

import json
import os
import statistics
import sys
import time

from bench.harness import Context
from bench.report import Target

TARGET = Target("<=", 0.5)
REPEATS = 3


def sizes(quick: bool, backend: str) -> dict:
    full = {
        "tokens": 1_000_000,
        "users": 100_000,
        "members": 10_000,
        "messages": 10_000_000,
        "denied": 100_000,
    }
    if quick or backend == "embedded":
        return {**{k: v // 10 for k, v in full.items()}, "members": 10_000}
    return full


def run(ctx: Context) -> None:
    spec = sizes(ctx.quick, ctx.backend.name)
    for name, value in spec.items():
        ctx.figure(f"seeded_{name}", value)
    database_url = ctx.backend.fresh_database()
    started = time.monotonic()
    # Bulk seeding runs statements far longer than the servers' 10 s statement timeout, as a
    # migration would (settings.py); the pages measured are timed, not cut off.
    out = ctx.backend._run(
        [sys.executable, "-m", "bench.admin"],
        ctx.backend.env(database_url, DB_STATEMENT_TIMEOUT="0", DB_QUERY_DEADLINE="0"),
        3600,
        "admin seed and measure",
        stdin=json.dumps(spec),
    )
    ctx.figure("seed_and_measure_seconds", time.monotonic() - started, "s")
    results = json.loads(out.strip().splitlines()[-1])
    ctx.figure("seed_seconds", results.pop("_seed_seconds"), "s")
    for page, (seconds, queries) in results.items():
        ctx.figure(f"{page}_ms", seconds * 1000, "ms")
        ctx.figure(f"{page}_queries", queries)
        ctx.ratio(f"{page}_seconds", seconds, TARGET)


# --- in the child process (bench env, Django set up) --------------------------------------------


def main() -> None:
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "config.settings")
    import django

    django.setup()
    spec = json.loads(sys.stdin.read())
    started = time.monotonic()
    fixtures = seed(**spec)
    seeded = time.monotonic() - started
    results = measure(fixtures)
    results["_seed_seconds"] = seeded
    print(json.dumps(results))


def seed(tokens: int, users: int, members: int, messages: int, denied: int) -> dict:
    from datetime import timedelta

    from django.contrib.auth import get_user_model
    from django.db import connection, transaction
    from django.utils import timezone

    pg = connection.vendor == "postgresql"
    now = timezone.now()
    params = {"now": now, "later": now + timedelta(days=30), "users": users}

    def insert(table_sql: str, select_sql: str, count: int, **extra) -> None:
        if pg:
            sql = f"INSERT INTO {table_sql} SELECT {select_sql} FROM generate_series(1, %(count)s) AS s(g)"
        else:
            sql = (
                "WITH RECURSIVE s(g) AS (SELECT 1 UNION ALL SELECT g + 1 FROM s WHERE g < %(count)s) "
                f"INSERT INTO {table_sql} SELECT {select_sql} FROM s"
            )
        with connection.cursor() as cursor:
            cursor.execute(sql, {**params, **extra, "count": count})

    digest = "md5('a' || g) || md5('b' || g)" if pg else "printf('%%064d', g)"
    # Distinct creation times, one second apart (ties would make "newest first" sort them all).
    created = "%(now)s - g * interval '1 second'" if pg else "datetime(%(now)s, '-' || g || ' seconds')"
    with transaction.atomic():
        insert(
            "auth_user (password, is_superuser, username, first_name, last_name, email, is_staff,"
            " is_active, date_joined)",
            "'!', false, 'user' || g, '', '', '', false, true, %(now)s",
            users,
        )
        with connection.cursor() as cursor:
            cursor.execute("SELECT min(id) FROM auth_user")
            base = cursor.fetchone()[0]
        insert(
            "tokens_nativetoken (public_id, digest, user_id, device_name, user_agent, created_ip,"
            " created_at, last_used_at, expires_at, revoked_at, revoked_by_id, revoked_reason,"
            " ssh_key_fingerprint)",
            f"'tok' || g, {digest}, %(base)s + (g %% %(users)s),"
            " CASE g %% 4 WHEN 0 THEN 'laptop ' WHEN 1 THEN 'phone ' WHEN 2 THEN 'tablet '"
            " ELSE 'ci runner ' END"
            f" || (g %% 1000), 'native/1.0', '203.0.113.7', {created},"
            " CASE WHEN g %% 3 = 0 THEN %(now)s END, %(later)s,"
            " CASE WHEN g %% 10 = 0 THEN %(now)s END, NULL, '', ''",
            tokens,
            base=base,
        )
        insert(
            "tokens_revokedtoken (jti, expires_at, revoked_at, reason, revoked_by_id)",
            "'jti' || g, %(later)s, %(now)s, 'bench', NULL",
            denied,
        )
        with connection.cursor() as cursor:
            cursor.execute(
                "INSERT INTO rooms_room (slug, name, last_seq, created_at) VALUES ('big', 'Big', %s, %s)",
                [messages, now],
            )
            cursor.execute("SELECT id FROM rooms_room WHERE slug = 'big'")
            room = cursor.fetchone()[0]
        insert(
            "rooms_membership (user_id, room_id, created_at)",
            "%(base)s + g - 1, %(room)s, %(now)s",
            members,
            base=base,
            room=room,
        )
        insert(
            "rooms_message (room_id, seq, sender_id, body, client_id, is_targeted, created_at)",
            "%(room)s, g, %(base)s + (g %% %(members)s), 'message number ' || g, NULL, false, %(now)s",
            messages,
            base=base,
            room=room,
            members=members,
        )
    with connection.cursor() as cursor:
        cursor.execute("ANALYZE")
    admin = get_user_model().objects.create_superuser("bench-admin", "bench@example.com", None)
    return {"admin": admin, "base": base, "room": room, "tokens": tokens, "users": users}


def measure(fixtures: dict) -> dict:
    from django.db import connection, reset_queries
    from django.test import Client
    from django.test.utils import CaptureQueriesContext

    from tokens.models import NativeToken

    client = Client(HTTP_HOST="127.0.0.1")
    client.force_login(fixtures["admin"])
    middle = NativeToken.objects.get(public_id=f"tok{fixtures['tokens'] // 2}")
    heavy_user = fixtures["base"] + 7  # ~10 tokens of its own
    one_active = (
        NativeToken.objects.filter(revoked_at=None).order_by("pk").values_list("pk", flat=True).first()
    )
    pages = {
        "token_list": ("/admin/tokens/nativetoken/", {}),
        "token_list_active": ("/admin/tokens/nativetoken/", {"status": "active"}),
        "token_list_last_used": ("/admin/tokens/nativetoken/", {"last_used_at__isnull": "True"}),
        "token_search_id": ("/admin/tokens/nativetoken/", {"q": middle.public_id}),
        "token_search_id_prefix": ("/admin/tokens/nativetoken/", {"q": "tok12345"}),
        "token_search_username": ("/admin/tokens/nativetoken/", {"q": "user4242"}),
        "token_search_device": ("/admin/tokens/nativetoken/", {"q": "tablet 42"}),
        "token_filter_user": ("/admin/tokens/nativetoken/", {"user": "user777"}),
        "token_change": (f"/admin/tokens/nativetoken/{middle.pk}/change/", {}),
        "denylist_search_jti": ("/admin/tokens/revokedtoken/", {"q": "jti5000"}),
        "user_list": ("/admin/auth/user/", {}),
        "user_search": ("/admin/auth/user/", {"q": "user4242"}),
        "user_change": (f"/admin/auth/user/{heavy_user}/change/", {}),
        "room_list": ("/admin/rooms/room/", {}),
        "room_change_10k_members": (f"/admin/rooms/room/{fixtures['room']}/change/", {}),
        "membership_list_room": ("/admin/rooms/membership/", {"room": "big"}),
        "message_list": ("/admin/rooms/message/", {}),
        "message_list_room": ("/admin/rooms/message/", {"room": "big"}),
        "message_search_body_in_room": ("/admin/rooms/message/", {"room": "big", "q": "number 999999"}),
    }
    results = {}
    for name, (path, query) in pages.items():
        timings = []
        for attempt in range(REPEATS + 1):
            reset_queries()
            with CaptureQueriesContext(connection) as captured:
                started = time.perf_counter()
                response = client.get(path, query)
                elapsed = time.perf_counter() - started
            if response.status_code != 200:
                raise SystemExit(f"{name}: HTTP {response.status_code}")
            if attempt:
                timings.append(elapsed)
        results[name] = (statistics.median(timings), len(captured))
    # The confirmation of "revoke every active token" (select all across pages).
    timings = []
    for _ in range(2):
        started = time.perf_counter()
        response = client.post(
            "/admin/tokens/nativetoken/?status=active",
            {"action": "revoke_selected", "_selected_action": [one_active], "select_across": "1"},
        )
        timings.append(time.perf_counter() - started)
        assert response.status_code == 200, response.status_code
    results["revoke_all_active_confirmation"] = (timings[-1], 0)
    return results


if __name__ == "__main__":
    main()
