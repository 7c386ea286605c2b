"""Seed a bench database through Django; run as ``python -m bench.seed`` with the bench env.

Reads a JSON spec on stdin, prints one JSON line with the raw credentials the clients need.
Live tokens come from tokens.login.issue_token and tokens.service_tokens.mint, exactly as the
product makes them. Expired rows for the purge scenario are inserted in one SQL statement:
a million ORM saves would take longer than the purge being measured.
"""

import json
import os
import sys


def main() -> None:
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "config.settings")
    import django

    django.setup()
    spec = json.loads(sys.stdin.read() or "{}")
    print(json.dumps(seed(**spec)))


def seed(
    users: int = 10,
    room: str = "bench",
    service_tokens: int = 0,
    expired_tokens: int = 0,
    rooms: int = 0,
    first_user_tokens: int = 0,
    first_user_rows: int = 0,
) -> dict:
    """``rooms`` more rooms ``bench-r0…`` with every user a member; ``first_user_tokens`` more
    real tokens for the first user (their raw values are returned), and ``first_user_rows`` live
    token rows without a usable secret (a mass revocation's bulk)."""
    from django.contrib.auth import get_user_model
    from django.db import transaction

    from rooms.membership import create_room
    from rooms.models import Membership, Room
    from tokens.login import issue_token
    from tokens.service_tokens import mint

    User = get_user_model()  # noqa: N806
    with transaction.atomic():
        people = [User.objects.create_user(username=f"bench-{i}") for i in range(users)]
        create_room(room, "Bench", members=people)
        issued = [issue_token(user, device_name="bench") for user in people]
        service = [mint(people[i % users], ttl=86400, name="bench")[0] for i in range(service_tokens)]
        extra = [issue_token(people[0], device_name="bench-extra").raw for _ in range(first_user_tokens)]
        for index in range(rooms):
            other = Room.objects.create(slug=f"bench-r{index}", name=f"Bench {index}")
            Membership.objects.bulk_create([Membership(room=other, user=person) for person in people])
    if expired_tokens:
        _insert_expired(people[0].pk, expired_tokens)
    if first_user_rows:
        _insert_live(people[0].pk, first_user_rows)
    return {
        "room": room,
        "users": [
            {"id": u.pk, "username": u.username, "token": t.raw, "token_id": t.token.public_id}
            for u, t in zip(people, issued, strict=True)
        ],
        "service_tokens": service,
        "rooms": [room, *(f"bench-r{i}" for i in range(rooms))],
        "first_user_tokens": extra,
    }


def _insert_live(user_id: int, count: int) -> None:
    """``count`` live native tokens of ``user_id`` (valid for 30 days; no raw value exists)."""
    _insert_tokens(user_id, count, prefix="bulk", device="bulk", created_days=0, expires_days=30)


def _insert_expired(user_id: int, count: int) -> None:
    """``count`` native tokens that expired ten days ago (past any purge grace period)."""
    _insert_tokens(user_id, count, prefix="exp", device="old", created_days=-40, expires_days=-10)


def _insert_tokens(user_id, count, *, prefix, device, created_days, expires_days) -> None:
    """``count`` token rows in one statement, ids ``<prefix>1…``, created and expiring that many
    days from now. Their digests are made from the id (a hash, or the prefix's hex and n's on
    SQLite), so no two prefixes collide."""
    from django.db import connection, transaction

    params = {"user": user_id, "count": count, "prefix": prefix, "device": device}
    with transaction.atomic(), connection.cursor() as cursor:
        if connection.vendor == "postgresql":
            series = "generate_series(1, %(count)s) AS g(n)"
            digest = "encode(sha256((%(prefix)s || n)::bytea), 'hex')"
            created = "now() + make_interval(days => %(created)s)"
            expires = "now() + make_interval(days => %(expires)s)"
            params.update(created=created_days, expires=expires_days)
            cte = ""
        else:
            cte = "WITH RECURSIVE g(n) AS (SELECT 1 UNION ALL SELECT n + 1 FROM g WHERE n < %(count)s) "
            series = "g"
            digest = "printf('%%s%%0*x', hex(%(prefix)s), 64 - length(hex(%(prefix)s)), n)"
            created, expires = "datetime('now', %(created)s)", "datetime('now', %(expires)s)"
            params.update(created=f"{created_days:+d} days", expires=f"{expires_days:+d} days")
        cursor.execute(
            f"""
            {cte}INSERT INTO tokens_nativetoken (public_id, digest, user_id, device_name, user_agent,
                created_at, expires_at, revoked_reason, ssh_key_fingerprint)
            SELECT %(prefix)s || n, {digest}, %(user)s, %(device)s, '', {created}, {expires}, '', ''
            FROM {series}
            """,
            params,
        )


if __name__ == "__main__":
    main()
