"""Operator-side steps of a drill, run on an app host with its environment (Django set up):
``python -m deploy.drills.seed < request.json`` prints one JSON answer.

- ``{"action": "seed", "users": [{"username", "public_key"}], "rooms": [{"slug", "members"}]}``:
  users with their SSH public keys registered (what ``add_ssh_key --create-user`` does) and
  rooms with their members (``create_room --member``), in one process instead of one command
  each; answers ``{"users": {username: id}}``.
- ``{"action": "sockets"}``: every live socket in every process, from the live-connection
  registry: ``[[connection_id, process, client_ip], …]`` (process is "HOSTNAME:PID").
"""

import json
import os
import sys


def seed(users: list[dict], rooms: list[dict]) -> dict:
    from django.contrib.auth import get_user_model
    from django.db import transaction

    from rooms.membership import create_room
    from tokens.login import register_key
    from tokens.ssh_signatures import parse_public_key

    user_model = get_user_model()
    made = {}
    with transaction.atomic():
        for spec in users:
            user = user_model.objects.create_user(username=spec["username"])
            register_key(user, parse_public_key(spec["public_key"]), name=f"{spec['username']}'s key")
            made[spec["username"]] = user
        for room in rooms:
            create_room(room["slug"], room["slug"], members=[made[name] for name in room["members"]])
    return {"users": {name: user.pk for name, user in made.items()}}


def sockets() -> list:
    from live import presence

    return [[live.connection_id, live.process, live.client_ip] for live in presence.all_sockets()]


def main() -> None:
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "config.settings")
    import django

    django.setup()
    request = json.loads(sys.stdin.read())
    action = request.pop("action")
    answer = seed(**request) if action == "seed" else sockets()
    print(json.dumps(answer))


if __name__ == "__main__":
    main()
