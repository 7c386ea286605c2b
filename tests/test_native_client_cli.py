"""The CLI without a server: help text, the one exit-code table, what each refusal tells the user,
and ``send --to USERNAME`` / ``members`` against a fake transport of the members endpoint's shape.

The CLI runs in-process (cli.main) with NativeClient given an httpx MockTransport; the
end-to-end versions against a real server are in test_native_client.py and
test_native_client_members_e2e.py.
"""

import argparse
import functools
import json
import re
from pathlib import Path

import httpx
import pytest

from native_client import (
    ApiError,
    LoginRefused,
    NativeClient,
    NetworkError,
    NotLoggedIn,
    ServersUnreachable,
    SigningError,
    StreamForbidden,
    StreamProtocolError,
    StreamUnauthorized,
    TokenStore,
    UnknownMembers,
    cli,
    commands,
)
from native_client.errors import UsageProblem
from native_client.exit_codes import EXIT_CODES, ExitCode, exit_code_for
from tests.ssh_helpers import make_key

SERVER = "http://rooms.test:8000"
ROOT = Path(__file__).resolve().parent.parent
MEMBERS = {"room": "general", "members": [{"id": 1, "username": "alice"}, {"id": 2, "username": "bob"}]}


class FakeServer:
    """The native API's answers for the calls these tests make; records every request."""

    def __init__(self, **answers):
        self.requests = []
        self.answers = {
            ("GET", "/api/native/rooms/general/members"): (200, MEMBERS),
            ("GET", "/api/native/rooms/alice-only/members"): (
                403,
                {"error": "forbidden", "detail": "You are not a member of this room, or it does not exist."},
            ),
            **answers,
        }

    def __call__(self, request: httpx.Request) -> httpx.Response:
        self.requests.append(request)
        key = (request.method, request.url.path)
        if key == ("POST", "/api/native/rooms/general/messages") and key not in self.answers:
            posted = json.loads(request.content)
            return httpx.Response(201, json=message(7, posted))
        status, body = self.answers.get(key, (404, {"error": "not_found", "detail": "Not found."}))
        return httpx.Response(status, json=body)

    def posts(self) -> list[dict]:
        return [json.loads(r.content) for r in self.requests if r.method == "POST"]


def message(message_id: int, posted: dict) -> dict:
    return {
        "id": message_id,
        "room": "general",
        "sender": {"id": 1, "username": "alice"},
        "body": posted["body"],
        "created_at": "2026-11-22T18:42:31.120Z",
        "client_id": posted["client_id"],
        "target_user_ids": posted.get("target_user_ids", []),
    }


@pytest.fixture
def fake(monkeypatch):
    server = FakeServer()
    monkeypatch.setattr(
        commands, "NativeClient", functools.partial(NativeClient, transport=httpx.MockTransport(server))
    )
    return server


@pytest.fixture
def config(tmp_path) -> Path:
    TokenStore(tmp_path).save(
        SERVER, {"token": "nat_x", "token_id": "t1", "expires_at": "", "user": {"id": 1, "username": "alice"}}
    )
    return tmp_path


def run(config, *args) -> int:
    return cli.main(["--config-dir", str(config), *map(str, args)])


# --- help -------------------------------------------------------------------------------------


def subcommands() -> list[str]:
    (action,) = [a for a in cli.build_parser()._actions if isinstance(a, argparse._SubParsersAction)]
    return sorted(action.choices)


def test_every_command_is_covered_here():
    assert subcommands() == sorted(
        ["history", "login", "logout", "members", "revoke", "rooms", "send", "sessions", "tail", "whoami"]
    )


@pytest.mark.parametrize("command", [None, *subcommands()])
def test_help_is_plain_text_and_ends_with_the_exit_codes(command, capsys):
    with pytest.raises(SystemExit) as exited:
        cli.main([command, "--help"] if command else ["--help"])
    assert exited.value.code == 0
    shown = capsys.readouterr().out
    assert "`" not in shown  # no ``literal`` or `interpreted` text
    assert not re.search(r":[a-z]+:", shown)  # no :role: markup
    assert "exit codes:" in shown
    for code, meaning in EXIT_CODES.items():
        assert re.search(rf"^  {int(code)} +{re.escape(meaning.split()[0])}", shown, re.MULTILINE)


def test_docs_client_md_has_the_same_exit_code_table():
    page = (ROOT / "docs" / "client.md").read_text()
    section = page.split("## Exit codes", 1)[1].split("\n## ", 1)[0]
    documented = {int(code) for code in re.findall(r"^\| (\d+) \|", section, re.MULTILINE)}
    assert documented == {int(code) for code in EXIT_CODES}


def test_a_bad_command_line_exits_with_the_usage_code(capsys):
    with pytest.raises(SystemExit) as exited:
        cli.main(["tail", "general", "--last", "500"])
    assert exited.value.code == ExitCode.USAGE == 2


# --- one table of exit codes ------------------------------------------------------------------


@pytest.mark.parametrize(
    ("error", "code"),
    [
        (UsageProblem("no server"), ExitCode.USAGE),
        (NotLoggedIn("x"), ExitCode.NOT_LOGGED_IN),
        (ApiError(401, "unauthorized", "x"), ExitCode.NOT_LOGGED_IN),
        (LoginRefused(401, "unauthorized", "x"), ExitCode.NOT_LOGGED_IN),
        (StreamUnauthorized("x", close_code=4401), ExitCode.NOT_LOGGED_IN),
        (ApiError(403, "forbidden", "x"), ExitCode.FORBIDDEN),
        (StreamForbidden("x"), ExitCode.FORBIDDEN),
        (StreamForbidden("x", close_code=4403), ExitCode.FORBIDDEN),
        (ApiError(404, "not_found", "x"), ExitCode.NOT_FOUND),
        (ApiError(400, "invalid_request", "x"), ExitCode.INVALID),
        (ApiError(413, "payload_too_large", "x"), ExitCode.INVALID),
        (StreamProtocolError("x", close_code=1009), ExitCode.INVALID),
        (UnknownMembers("x", ["carol"]), ExitCode.INVALID),
        (ApiError(429, "rate_limited", "x", retry_after=3), ExitCode.RATE_LIMITED),
        (ApiError(503, "unavailable", "x"), ExitCode.UNAVAILABLE),
        (NetworkError("x"), ExitCode.UNAVAILABLE),
        (ServersUnreachable("x"), ExitCode.UNAVAILABLE),
        (SigningError("x"), ExitCode.KEY),
        (ApiError(500, "internal_error", "x"), ExitCode.ERROR),
    ],
)
def test_each_kind_of_failure_has_one_exit_code(error, code):
    assert exit_code_for(error) is code


def test_a_rate_limited_answer_says_when_to_retry(config, monkeypatch, capsys):
    limited = httpx.MockTransport(
        lambda r: httpx.Response(
            429, json={"error": "rate_limited", "detail": "Too many."}, headers={"Retry-After": "7"}
        )
    )
    monkeypatch.setattr(commands, "NativeClient", functools.partial(NativeClient, transport=limited))
    assert run(config, "rooms") == ExitCode.RATE_LIMITED
    assert capsys.readouterr().err == "error: Too many. Retry in 7 s.\n"


def test_no_server_known_is_a_usage_error(tmp_path, capsys):
    assert run(tmp_path, "rooms") == ExitCode.USAGE
    assert "pass --server URL" in capsys.readouterr().err


# --- messages that say what to do -------------------------------------------------------------


@pytest.fixture
def login_answers(monkeypatch):
    """A server whose POST /token refuses with ``detail`` (set by the test)."""
    refusal = {}

    def answer(request):
        if request.url.path.endswith("/challenge"):
            return httpx.Response(
                200, json={"nonce": "n" * 43, "namespace": "native-api-login", "expires_in": 60}
            )
        return httpx.Response(401, json={"error": "unauthorized", "detail": refusal["detail"]})

    monkeypatch.setattr(
        commands, "NativeClient", functools.partial(NativeClient, transport=httpx.MockTransport(answer))
    )
    return refusal


def test_an_unknown_key_says_an_operator_must_register_it_not_to_log_in_again(
    tmp_path, login_answers, capsys
):
    key = make_key(tmp_path, "ed25519")
    login_answers["detail"] = "Login failed: unknown key."
    assert run(tmp_path, "login", "--server", SERVER, "--key", key) == ExitCode.NOT_LOGGED_IN
    err = capsys.readouterr().err
    assert "log in again" not in err.lower()
    assert f"is not registered on {SERVER}" in err
    assert f"python manage.py add_ssh_key USERNAME {key}.pub" in err
    assert re.search(r"SHA256:[A-Za-z0-9+/]{43}\b", err)  # the fingerprint an operator can check
    assert len(err.splitlines()) == 1


@pytest.mark.parametrize(
    ("detail", "says"),
    [
        ("Login failed: the account is disabled.", "disabled. Ask an operator"),
        ("Login failed: unknown, expired or used nonce.", "Run login again"),
        ("Login failed: the signature does not verify.", "belongs to the private key"),
        ("Something new.", "add_ssh_key"),
    ],
)
def test_every_login_refusal_says_what_to_do(tmp_path, login_answers, capsys, detail, says):
    key = make_key(tmp_path, "ed25519")
    login_answers["detail"] = detail
    assert run(tmp_path, "login", "--server", SERVER, "--key", key) == ExitCode.NOT_LOGGED_IN
    assert says in capsys.readouterr().err


def test_a_refused_token_names_the_login_command_with_this_server(config, monkeypatch, capsys):
    refused = httpx.MockTransport(
        lambda r: httpx.Response(401, json={"error": "unauthorized", "detail": "The token was revoked."})
    )
    monkeypatch.setattr(commands, "NativeClient", functools.partial(NativeClient, transport=refused))
    assert run(config, "whoami") == ExitCode.NOT_LOGGED_IN
    assert capsys.readouterr().err == (
        "error: The token was revoked. Log in again: "
        f"python -m native_client login --server {SERVER} --key PATH\n"
    )


def test_a_forbidden_room_points_at_the_rooms_command(config, fake, capsys):
    assert run(config, "members", "alice-only") == ExitCode.FORBIDDEN
    assert capsys.readouterr().err == (
        "error: You are not a member of this room, or it does not exist. "
        "python -m native_client rooms lists the rooms you are in.\n"
    )


# --- members and send --to --------------------------------------------------------------------


def test_members_asks_the_members_endpoint_and_returns_its_list(fake):
    with NativeClient(SERVER, "nat_x", transport=httpx.MockTransport(fake)) as client:
        assert client.members("general") == MEMBERS["members"]
        with pytest.raises(ApiError) as refused:
            client.members("alice-only")
    assert refused.value.status == 403
    (first, _) = fake.requests
    assert (first.method, first.url.path, first.headers["Authorization"]) == (
        "GET",
        "/api/native/rooms/general/members",
        "Bearer nat_x",
    )


def test_user_ids_accepts_usernames_and_numeric_ids(fake):
    with NativeClient(SERVER, "nat_x", transport=httpx.MockTransport(fake)) as client:
        assert client.user_ids("general", ["bob", "1", 2]) == [2, 1, 2]
        calls = len(fake.requests)
        assert client.user_ids("general", ["5", 6]) == [5, 6]  # ids alone: no need to ask
        assert len(fake.requests) == calls
        with pytest.raises(UnknownMembers, match="'carol'") as unknown:
            client.user_ids("general", ["bob", "carol"])
    assert unknown.value.names == ["carol"]


def test_the_cli_sends_to_a_member_by_username(config, fake, capsys):
    assert run(config, "send", "general", "psst", "--to", "bob") == 0
    (posted,) = fake.posts()
    assert posted["target_user_ids"] == [2] and posted["body"] == "psst"
    assert capsys.readouterr().out == "[7] alice: psst\n"


def test_an_unknown_username_is_named_and_nothing_is_sent(config, fake, capsys):
    assert run(config, "send", "general", "psst", "--to", "bob", "--to", "carol") == ExitCode.INVALID
    assert fake.posts() == []
    err = capsys.readouterr().err
    assert "'carol'" in err and "'bob'" not in err and "Nothing was sent" in err
    assert "python -m native_client members general" in err


def test_the_members_command_lists_ids_and_usernames(config, fake, capsys):
    assert run(config, "members", "general") == 0
    assert capsys.readouterr().out == "1  alice\n2  bob\n"


def test_a_server_without_the_members_endpoint_says_to_use_numeric_ids(config, fake, capsys):
    fake.answers.pop(("GET", "/api/native/rooms/general/members"))
    assert run(config, "send", "general", "psst", "--to", "bob") == ExitCode.NOT_FOUND
    assert "use numeric user ids" in capsys.readouterr().err and fake.posts() == []
