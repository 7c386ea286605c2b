"""``send --to USERNAME`` and ``members ROOM`` against a real daphne server.

These need the server's ``GET /api/native/rooms/{slug}/members`` (200 ``{"room", "members":
[{"id", "username"}…]}`` ordered by username; 403 ``forbidden`` for a non-member or unknown
room), which is built on the server side separately. Until it is merged, these tests fail here
with exit 5 ("… has no room member list"): that is the client reporting the missing endpoint.
The client half is unit-tested against a fake of that shape in test_native_client_cli.py.

alice, bob and mallory are in "general" here; alice alone is in "alice-only".
"""

import pytest

from native_client import NativeClient
from native_client.cli import main as cli_main

pytestmark = pytest.mark.e2e


def run_cli(capsys, config, *args) -> tuple[int, str, str]:
    code = cli_main(["--config-dir", str(config), *map(str, args)])
    out, err = capsys.readouterr()
    return code, out, err


@pytest.fixture
def logged_in_alice(server, keys, alice, bob, mallory, general, alice_only, tmp_path, capsys, monkeypatch):
    from rooms.membership import add_member

    add_member(general, mallory)
    monkeypatch.delenv("SSH_AUTH_SOCK", raising=False)
    config = tmp_path / "config"
    assert run_cli(capsys, config, "login", "--server", server.url, "--key", keys["alice"])[0] == 0
    return config


def test_members_lists_ids_and_usernames_ordered_by_username(logged_in_alice, alice, bob, mallory, capsys):
    code, out, err = run_cli(capsys, logged_in_alice, "members", "general")
    assert code == 0, err
    assert out == f"{alice.pk}  alice\n{bob.pk}  bob\n{mallory.pk}  mallory\n"


def test_send_to_a_username_reaches_only_that_member(server, keys, logged_in_alice, bob, capsys):
    code, out, err = run_cli(capsys, logged_in_alice, "send", "general", "just for bob", "--to", "bob")
    assert code == 0, err
    assert out.endswith("] alice: just for bob\n")
    with NativeClient(server.url) as bob_client, NativeClient(server.url) as mallory_client:
        bob_client.login(keys["bob"])
        mallory_client.login(keys["mallory"])
        (seen,) = bob_client.history("general")["messages"]
        assert seen["body"] == "just for bob" and seen["target_user_ids"] == [bob.pk]
        assert mallory_client.history("general")["messages"] == []


def test_an_unknown_username_is_named_and_nothing_is_sent(server, keys, logged_in_alice, capsys):
    code, _, err = run_cli(capsys, logged_in_alice, "send", "general", "for carol", "--to", "carol")
    assert code == 6
    assert "'carol'" in err and "Nothing was sent" in err
    with NativeClient(server.url) as bob_client:
        bob_client.login(keys["bob"])
        assert bob_client.history("general")["messages"] == []


def test_members_of_a_room_you_are_not_in_is_forbidden(server, keys, bob, alice_only, tmp_path, capsys):
    config = tmp_path / "bob"
    assert run_cli(capsys, config, "login", "--server", server.url, "--key", keys["bob"])[0] == 0
    for room in ("alice-only", "no-such-room"):
        code, _, err = run_cli(capsys, config, "members", room)
        assert code == 4 and "not a member" in err
