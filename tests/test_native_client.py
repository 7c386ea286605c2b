"""native_client against a real daphne server, with real ssh-keygen keys and a real ssh-agent.

alice and bob share "general"; alice alone is in "alice-only" (see conftest). The CLI runs as
``python -m native_client`` in a subprocess with its own config dir, as a user would run it.
"""

import asyncio
import json
import logging
import os
import queue
import shutil
import signal
import stat
import subprocess
import sys
import threading

import httpx
import pytest
import websockets

from native_client import (
    ApiError,
    Backoff,
    NativeClient,
    NetworkError,
    SigningError,
    StreamForbidden,
    StreamStopped,
    StreamUnauthorized,
    Tail,
    TokenStore,
)
from native_client.cli import main as cli_main
from tests.server import ROOT, free_port
from tests.ssh_helpers import fingerprint, make_key, public_key_line, ssh_agent

pytestmark = pytest.mark.e2e

PROG = "python -m native_client"
FAST = Backoff(initial=0.05, cap=0.5, rate_limited=0.5)


def cli_env(config_dir) -> dict:
    env = {k: v for k, v in os.environ.items() if k not in ("SSH_AUTH_SOCK", "SSH_AGENT_PID")}
    env["NATIVE_CLIENT_CONFIG_DIR"] = str(config_dir)
    return env


def cli(config_dir, *args, umask=-1) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "native_client", *map(str, args)],
        cwd=ROOT,
        env=cli_env(config_dir),
        capture_output=True,
        text=True,
        timeout=60,
        umask=umask,
    )


def stored_token(config_dir) -> str:
    (path,) = config_dir.glob("session-*.json")
    return json.loads(path.read_text())["token"]


def login(url, key, device=None) -> NativeClient:
    client = NativeClient(url)
    client.login(key, device_name=device)
    return client


class Run:
    """Drains a Tail in a task, recording messages, status events and how it stopped."""

    def __init__(self, token, servers, room, after=None, **options):
        self.messages, self.events, self.stopped = [], [], None
        self.tail = Tail(token, servers, room, after, on_event=self.events.append, **options)
        self.task = asyncio.create_task(self._drain())

    async def _drain(self):
        try:
            async for message in self.tail.messages():
                self.messages.append(message)
        except StreamStopped as exc:
            self.stopped = exc

    def subscribed_at(self, url) -> int:
        return sum(1 for e in self.events if e.kind == "subscribed" and e.url == url)

    async def close(self):
        self.task.cancel()
        await asyncio.gather(self.task, return_exceptions=True)


async def until(predicate, timeout=10.0):
    deadline = asyncio.get_running_loop().time() + timeout
    while not predicate():
        assert asyncio.get_running_loop().time() < deadline, "timed out waiting"
        await asyncio.sleep(0.02)


async def post(client, room, body, **kwargs) -> dict:
    return await asyncio.to_thread(client.send, room, body, **kwargs)


# --- login ------------------------------------------------------------------------------------


def test_it_logs_in_with_a_key_file_and_the_token_works(server, keys, alice):
    with NativeClient(server.url) as client:
        issued = client.login(keys["alice"], device_name="laptop")
        me = client.me()
    assert issued["user"]["username"] == "alice" and issued["token"].startswith("nat_")
    assert me["user"]["username"] == "alice"
    assert me["token"]["id"] == issued["token_id"] and me["token"]["device_name"] == "laptop"


def test_an_unknown_key_is_refused_with_the_contracts_error(server, tmp_path, alice):
    stranger = make_key(tmp_path, "ed25519")
    with NativeClient(server.url) as client, pytest.raises(ApiError) as refused:
        client.login(stranger)
    assert (refused.value.status, refused.value.code) == (401, "unauthorized")
    assert client.token is None


def test_it_logs_in_through_ssh_agent_with_a_passphrase_protected_key(
    server, tmp_path, monkeypatch, django_user_model
):
    from tokens.login import register_key
    from tokens.ssh_signatures import parse_public_key

    key = make_key(tmp_path, "ed25519", passphrase="correct horse")
    carol = django_user_model.objects.create_user(username="carol")
    register_key(carol, parse_public_key(public_key_line(key)), name="carol's key")
    # Were the key file used instead of the agent, ssh-keygen would ask this askpass, which refuses.
    askpass = tmp_path / "askpass.sh"
    askpass.write_text("#!/bin/sh\nexit 1\n")
    askpass.chmod(0o700)
    monkeypatch.setenv("SSH_ASKPASS", str(askpass))
    monkeypatch.setenv("SSH_ASKPASS_REQUIRE", "force")
    monkeypatch.delenv("SSH_AUTH_SOCK", raising=False)

    with NativeClient(server.url) as client:
        with pytest.raises(SigningError):
            client.login(key)  # no agent: the encrypted key cannot be used
        with ssh_agent(key, passphrase="correct horse") as agent_env:
            monkeypatch.setenv("SSH_AUTH_SOCK", agent_env["SSH_AUTH_SOCK"])
            issued = client.login(key, device_name="agent")
        assert issued["user"]["username"] == "carol"
        assert client.me()["token"]["device_name"] == "agent"


def test_the_cli_says_an_unknown_key_must_be_registered_by_an_operator(server, tmp_path, alice):
    stranger = make_key(tmp_path, "ed25519")
    refused = cli(tmp_path / "config", "login", "--server", server.url, "--key", stranger)
    assert refused.returncode == 3
    assert "log in again" not in refused.stderr.lower()  # it would fail the same way
    assert fingerprint(f"{stranger}.pub") in refused.stderr
    assert refused.stderr.rstrip().endswith(f"python manage.py add_ssh_key USERNAME {stranger}.pub")


def test_a_pub_path_with_no_agent_signs_with_the_private_key_beside_it(server, keys, alice, tmp_path):
    config = tmp_path / "config"
    logged_in = cli(config, "login", "--server", server.url, "--key", f"{keys['alice']}.pub")  # no agent
    assert logged_in.returncode == 0, logged_in.stderr
    assert cli(config, "whoami").stdout.startswith("alice ")


def test_a_pub_path_with_no_private_key_and_no_agent_says_what_to_pass(server, keys, alice, tmp_path):
    lonely = tmp_path / "only.pub"
    shutil.copy(f"{keys['alice']}.pub", lonely)
    refused = cli(tmp_path / "config", "login", "--server", server.url, "--key", lonely)
    assert refused.returncode == 9
    assert f"No private key next to {lonely}, and no ssh-agent is running" in refused.stderr
    assert "private key file" in refused.stderr


# --- token store and CLI ----------------------------------------------------------------------


def test_the_cli_keeps_the_token_in_a_private_file_and_never_prints_it(server, keys, alice, tmp_path):
    config = tmp_path / "config"
    # umask 0: the modes must come from how the files are created, not from the caller's umask.
    logged_in = cli(
        config, "login", "--server", server.url, "--key", keys["alice"], "--device", "ci", umask=0
    )
    assert logged_in.returncode == 0, logged_in.stderr
    assert "alice" in logged_in.stdout
    (token_file,) = config.glob("session-*.json")
    assert stat.S_IMODE(token_file.stat().st_mode) == 0o600
    assert stat.S_IMODE((config / "settings.json").stat().st_mode) == 0o600
    assert stat.S_IMODE(config.stat().st_mode) == 0o700
    token = stored_token(config)
    assert token.startswith("nat_")

    whoami = cli(config, "whoami")  # no --server: the last one used
    assert whoami.returncode == 0, whoami.stderr
    assert whoami.stdout.startswith("alice ") and '"ci"' in whoami.stdout
    for result in (logged_in, whoami, cli(config, "sessions")):
        assert token not in result.stdout + result.stderr
        assert token[4:12] not in result.stdout + result.stderr


def test_an_existing_config_dir_open_to_others_is_tightened(tmp_path, server, keys, alice):
    config = tmp_path / "shared"
    config.mkdir(mode=0o755)
    config.chmod(0o755)
    assert cli(config, "login", "--server", server.url, "--key", keys["alice"]).returncode == 0
    assert stat.S_IMODE(config.stat().st_mode) == 0o700


def test_the_cli_lists_sessions_and_logs_out_only_this_one(server, keys, alice, tmp_path):
    config = tmp_path / "config"
    assert (
        cli(config, "login", "--server", server.url, "--key", keys["alice"], "--device", "laptop").returncode
        == 0
    )
    phone = login(server.url, keys["alice"], device="phone")

    sessions = cli(config, "sessions")
    assert sessions.returncode == 0, sessions.stderr
    lines = sessions.stdout.splitlines()
    assert len(lines) == 2
    assert [line for line in lines if line.startswith("*")] == [next(li for li in lines if "laptop" in li)]
    token = stored_token(config)

    logged_out = cli(config, "logout")
    assert logged_out.returncode == 0 and "Logged out" in logged_out.stdout
    assert not list(config.glob("session-*.json"))
    with NativeClient(server.url, token) as old, pytest.raises(ApiError) as refused:
        old.me()
    assert refused.value.status == 401
    assert phone.me()["token"]["device_name"] == "phone"  # the other session lives on

    again = cli(config, "whoami")
    assert again.returncode == 3
    assert "Not logged in" in again.stderr and again.stdout == ""


def test_the_cli_revokes_another_session_by_id(server, keys, alice, tmp_path):
    config = tmp_path / "config"
    assert cli(config, "login", "--server", server.url, "--key", keys["alice"]).returncode == 0
    phone = login(server.url, keys["alice"], device="phone")
    phone_id = phone.me()["token"]["id"]
    revoked = cli(config, "revoke", phone_id)
    assert revoked.returncode == 0, revoked.stderr
    with pytest.raises(ApiError):
        phone.me()
    assert cli(config, "revoke", phone_id).returncode == 5  # no longer a live session: 404


def run_cli(capsys, config, *args) -> tuple[int, str, str]:
    """The CLI in this process (cheaper than a subprocess when a test makes many calls)."""
    code = cli_main(["--config-dir", str(config), *map(str, args)])
    out, err = capsys.readouterr()
    return code, out, err


def test_the_same_refusal_gives_the_same_exit_code_in_history_and_tail(
    server, keys, alice, bob, general, alice_only, tmp_path, capsys, monkeypatch
):
    monkeypatch.delenv("SSH_AUTH_SOCK", raising=False)
    config = tmp_path / "config"
    assert run_cli(capsys, config, "login", "--server", server.url, "--key", keys["bob"])[0] == 0
    code, rooms, _ = run_cli(capsys, config, "rooms")
    assert code == 0 and rooms.split()[0] == "general" and "alice-only" not in rooms

    # Not a member: 4, whether history's 403, tail's history call, or tail's forbidden frame says it.
    not_a_member = [
        run_cli(capsys, config, "history", "alice-only"),
        run_cli(capsys, config, "tail", "alice-only"),
        run_cli(capsys, config, "tail", "alice-only", "--last", "0"),
        run_cli(capsys, config, "tail", "no-such-room", "--after", "0"),
    ]
    assert [code for code, _, _ in not_a_member] == [4, 4, 4, 4], not_a_member
    assert not_a_member[0][2] == (
        "error: You are not a member of this room, or it does not exist. "
        f"{PROG} rooms lists the rooms you are in.\n"
    )
    for _, out, err in not_a_member[1:]:
        assert "not a member" in err and "rooms lists the rooms you are in" in err and out == ""

    # The token refused: 3 everywhere, with the command that fixes it.
    with NativeClient(server.url, stored_token(config)) as client:
        client.logout_everywhere()
    refused = [
        run_cli(capsys, config, *command)
        for command in (["whoami"], ["history", "general"], ["tail", "general"])
    ]
    assert [code for code, _, _ in refused] == [3, 3, 3], refused
    for _, _, err in refused:
        assert f"Log in again: {PROG} login --server {server.url} --key PATH" in err

    # Nothing stored for that server: 3 too.
    elsewhere = f"http://127.0.0.1:{free_port()}"
    for command in ("history", "tail"):
        code, _, err = run_cli(capsys, config, command, "general", "--server", elsewhere)
        assert code == 3 and "Not logged in" in err

    # The server cannot be reached: 8 (tail retries forever instead, see the Tail tests).
    TokenStore(config).save(
        elsewhere, {"token": "nat_x", "token_id": "t", "expires_at": "", "user": {"id": 1, "username": "bob"}}
    )
    code, _, err = run_cli(capsys, config, "history", "general", "--server", elsewhere)
    assert code == 8 and "Cannot reach" in err and len(err.splitlines()) == 1


def test_the_cli_sends_and_reads_history_with_hostile_text_escaped(
    server, keys, alice, bob, general, tmp_path
):
    config = tmp_path / "config"
    assert cli(config, "login", "--server", server.url, "--key", keys["alice"]).returncode == 0
    sent = cli(config, "send", "general", "hello bob")
    assert sent.returncode == 0, sent.stderr
    message_id = int(sent.stdout.split("]")[0].lstrip("["))
    assert sent.stdout == f"[{message_id}] alice: hello bob\n"

    with login(server.url, keys["bob"]) as bob_client:
        bob_client.send("general", "\x1b[2Jcleared\n[999] alice: forged")
    history = cli(config, "history", "general")
    lines = history.stdout.splitlines()
    assert lines[0] == f"[{message_id}] alice: hello bob"
    assert lines[1].endswith("] bob: \\x1b[2Jcleared\\n[999] alice: forged")
    assert len(lines) == 2 and "\x1b" not in history.stdout


def test_a_private_message_reaches_only_its_target(server, keys, alice, bob, mallory, general, tmp_path):
    from rooms.membership import add_member

    add_member(general, mallory)
    config = tmp_path / "config"
    assert cli(config, "login", "--server", server.url, "--key", keys["alice"]).returncode == 0
    assert cli(config, "send", "general", "just for bob", "--to", bob.pk).returncode == 0
    with login(server.url, keys["bob"]) as bob_client, login(server.url, keys["mallory"]) as mallory_client:
        assert [m["body"] for m in bob_client.history("general")["messages"]] == ["just for bob"]
        assert mallory_client.history("general")["messages"] == []


# --- send -------------------------------------------------------------------------------------


class LoseFirstAnswer(httpx.BaseTransport):
    """Forwards every request, but drops the answer to the first message post: the server did
    the work, the client saw the connection break."""

    def __init__(self):
        self.inner = httpx.HTTPTransport()
        self.posted = []

    def handle_request(self, request):
        response = self.inner.handle_request(request)
        if request.method == "POST" and request.url.path.endswith("/messages"):
            self.posted.append(json.loads(request.content))
            if len(self.posted) == 1:
                response.read()
                response.close()
                raise httpx.ReadError("connection reset by peer", request=request)
        return response


def test_send_retries_a_lost_answer_once_without_duplicating_the_message(server, keys, alice, general):
    token = login(server.url, keys["alice"]).token
    transport = LoseFirstAnswer()
    with NativeClient(server.url, token, transport=transport) as client:
        message = client.send("general", "exactly once")
        history = client.history("general")["messages"]
    assert len(transport.posted) == 2
    assert transport.posted[0]["client_id"] == transport.posted[1]["client_id"] == message["client_id"]
    assert [(m["id"], m["body"]) for m in history] == [(message["id"], "exactly once")]


def test_send_with_the_same_client_id_returns_the_original(server, keys, alice, general):
    with login(server.url, keys["alice"]) as client:
        first = client.send("general", "one", client_id="abc-1")
        again = client.send("general", "one, again", client_id="abc-1")
        assert again == first
        assert client.send("general", "two")["client_id"] != client.send("general", "two")["client_id"]


def test_send_gives_up_after_one_retry_with_a_network_error():
    def refuse(request):
        raise httpx.ConnectError("connection refused", request=request)

    attempts = []
    transport = httpx.MockTransport(lambda request: attempts.append(request) or refuse(request))
    client = NativeClient("http://127.0.0.1:9", "nat_x", transport=transport)
    with client, pytest.raises(NetworkError):
        client.send("general", "hello")
    assert len(attempts) == 2
    assert json.loads(attempts[0].content)["client_id"] == json.loads(attempts[1].content)["client_id"]


# --- tail -------------------------------------------------------------------------------------


async def test_tail_resumes_on_another_server_after_a_kill_without_gap_or_duplicate(
    server, server_factory, keys, alice, bob, general
):
    first, second = server_factory(name="first"), server
    alice_client = await asyncio.to_thread(login, first.url, keys["alice"])
    bob_first = await asyncio.to_thread(login, first.url, keys["bob"])
    bob_second = NativeClient(second.url, bob_first.token)
    use_second = False

    def choose():  # the caller decides where to go next: first, until it is known to be dead
        return second.url if use_second else first.url

    run = Run(alice_client.token, choose, "general", backoff=FAST)
    await until(lambda: run.subscribed_at(first.url))
    sent = [await post(bob_first, "general", f"m{i}") for i in (1, 2)]
    await until(lambda: len(run.messages) == 2)

    first.stop(signal.SIGKILL)
    await until(lambda: any(e.kind == "reconnecting" for e in run.events))
    sent += [await post(bob_second, "general", f"m{i}") for i in (3, 4)]  # missed while down
    use_second = True
    await until(lambda: run.subscribed_at(second.url))
    sent += [await post(bob_second, "general", "m5")]  # live on the new server
    await until(lambda: len(run.messages) >= 5)
    await asyncio.sleep(0.3)  # room for a duplicate to show up, were there one
    await run.close()

    assert [m["id"] for m in run.messages] == [m["id"] for m in sent]
    assert [m["body"] for m in run.messages] == ["m1", "m2", "m3", "m4", "m5"]
    assert run.tail.last_seen == sent[-1]["id"]
    assert run.events[1].kind == "reconnecting" and run.events[1].close_code == 1006


async def test_tail_fails_over_down_a_list_when_a_server_shuts_down(
    server_factory, keys, alice, bob, general
):
    first, second = server_factory(name="first"), server_factory(name="second")
    alice_client = await asyncio.to_thread(login, first.url, keys["alice"])
    bob_second = await asyncio.to_thread(login, second.url, keys["bob"])
    before = await post(bob_second, "general", "before the tail")

    run = Run(alice_client.token, [first.url, second.url], "general", after=0, backoff=FAST)
    await until(lambda: run.subscribed_at(first.url))
    first.stop()  # SIGTERM: a normal shutdown
    await until(lambda: run.subscribed_at(second.url))
    after = await post(bob_second, "general", "after the move")
    await until(lambda: len(run.messages) >= 2)
    await asyncio.sleep(0.2)
    await run.close()
    assert [m["id"] for m in run.messages] == [before["id"], after["id"]]


async def test_tail_replays_the_backlog_after_the_given_id_then_goes_live(server, keys, alice, bob, general):
    bob_client = await asyncio.to_thread(login, server.url, keys["bob"])
    old = [await post(bob_client, "general", f"old {i}") for i in range(3)]
    alice_client = await asyncio.to_thread(login, server.url, keys["alice"])
    run = Run(alice_client.token, server.url, "general", after=old[0]["id"], backoff=FAST)
    await until(lambda: run.subscribed_at(server.url))
    new = await post(bob_client, "general", "new")
    await until(lambda: len(run.messages) >= 3)
    await run.close()
    assert [m["id"] for m in run.messages] == [old[1]["id"], old[2]["id"], new["id"]]


async def test_tail_stops_with_unauthorized_when_its_session_logs_out(server, keys, alice, general):
    client = await asyncio.to_thread(login, server.url, keys["alice"])
    token = client.token
    run = Run(token, server.url, "general", backoff=FAST)
    await until(lambda: run.subscribed_at(server.url))
    await asyncio.to_thread(client.logout)
    await asyncio.wait_for(run.task, 5)
    assert isinstance(run.stopped, StreamUnauthorized)
    assert run.stopped.close_code == 4401
    # 4401: one fresh ticket at once (API.md: "mint a new ticket"), which the dead token cannot get.
    assert [(e.close_code, e.delay) for e in run.events if e.kind == "reconnecting"] == [(4401, 0.0)]

    again = Run(token, server.url, "general", backoff=FAST)  # the dead token cannot mint a ticket
    await asyncio.wait_for(again.task, 5)
    assert isinstance(again.stopped, StreamUnauthorized) and again.stopped.close_code is None


async def test_no_credential_ever_appears_in_a_url_or_a_log_line(server, keys, alice, bob, general, caplog):
    """The ticket goes in the auth frame: the client's websockets DEBUG log and the server's
    access log of a whole tail (history, ticket, connect, live message, close) hold no secret."""
    caplog.set_level(logging.DEBUG)
    server_log_before = len(server.log())
    alice_client = await asyncio.to_thread(login, server.url, keys["alice"])
    bob_client = await asyncio.to_thread(login, server.url, keys["bob"])
    run = Run(alice_client.token, server.url, "general", last=5, backoff=FAST)
    await until(lambda: run.subscribed_at(server.url))
    await post(bob_client, "general", "hi")
    await until(lambda: len(run.messages) == 1)
    await run.close()
    await until(lambda: "WSDISCONNECT" in server.log()[server_log_before:])

    client_log = "\n".join(record.getMessage() for record in caplog.records)
    assert "> GET /api/ws/native HTTP/1.1" in client_log  # websockets did log at DEBUG
    server_log = server.log()[server_log_before:]
    websocket_lines = [line for line in server_log.splitlines() if "/api/ws/native" in line]
    assert websocket_lines and not any("?" in line for line in websocket_lines)
    for text in (client_log, server_log):
        for secret in ("wst_", "nat_", "nst_", "ticket=", "token=", alice_client.token[4:12]):
            assert secret not in text


@pytest.mark.parametrize("room", ["alice-only", "no-such-room"])
async def test_tail_stops_at_once_for_a_room_it_may_not_read(server, keys, alice, bob, alice_only, room):
    bob_client = await asyncio.to_thread(login, server.url, keys["bob"])
    run = Run(bob_client.token, server.url, room, backoff=FAST)
    await asyncio.wait_for(run.task, 5)
    assert isinstance(run.stopped, StreamForbidden)
    assert run.events == []


async def test_tail_backs_off_longer_when_the_server_rate_limits_connects(
    server_factory, keys, alice, general
):
    limited = server_factory(env={"NATIVE_RATE_WS_CONNECT": "1/h"}, name="limited")
    client = await asyncio.to_thread(login, limited.url, keys["alice"])
    ticket = await asyncio.to_thread(lambda: client.ws_ticket()["ticket"])
    first = await websockets.connect(f"ws://127.0.0.1:{limited.port}/api/ws/native?ticket={ticket}")
    try:
        run = Run(client.token, limited.url, "general", backoff=FAST)
        await until(lambda: run.events)
        await run.close()
    finally:
        await first.close()
    (event,) = run.events
    assert event.kind == "reconnecting" and event.close_code == 4429
    assert event.delay >= FAST.rate_limited > FAST.cap / 2


def test_cli_tail_after_send_shows_the_latest_messages_then_live_ones_and_exits_3_when_logged_out(
    server, keys, alice, bob, general, tmp_path
):
    config = tmp_path / "config"
    assert cli(config, "login", "--server", server.url, "--key", keys["alice"]).returncode == 0
    with NativeClient(server.url, stored_token(config)) as client:
        older = [client.send("general", f"hello {i}") for i in range(11)]
    sent = cli(config, "send", "general", "hello 11")  # the quickstart's send, then its tail
    assert sent.returncode == 0
    expected = [f"[{m['id']}] alice: {m['body']}\n" for m in older[2:]] + [sent.stdout]
    tail = subprocess.Popen(
        [sys.executable, "-m", "native_client", "tail", "general"],
        cwd=ROOT,
        env=cli_env(config),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        stdout, stderr = lines_of(tail.stdout), lines_of(tail.stderr)
        # The 10 latest (default --last), then the status line saying it waits for more.
        assert [stdout.get(timeout=15) for _ in range(10)] == expected
        status = stderr.get(timeout=15)
        assert status.startswith(f"subscribed to general at {server.url}: 10 earlier messages above")
        assert "waiting for new ones" in status
        with login(server.url, keys["bob"]) as bob_client:
            message = bob_client.send("general", "hello alice")
        assert stdout.get(timeout=10) == f"[{message['id']}] bob: hello alice\n"
        with pytest.raises(queue.Empty):
            stdout.get(timeout=0.3)  # nothing printed twice

        assert cli(config, "logout").returncode == 0
        assert tail.wait(timeout=10) == 3
        rest = []
        while not rest or not rest[-1].startswith("error:"):
            rest.append(stderr.get(timeout=5))
        assert f"Log in again: python -m native_client login --server {server.url}" in rest[-1]
    finally:
        tail.kill()
        tail.wait()


def test_cli_tail_of_an_empty_room_says_it_is_waiting(server, keys, alice, bob, general, tmp_path):
    config = tmp_path / "config"
    assert cli(config, "login", "--server", server.url, "--key", keys["alice"]).returncode == 0
    tail = subprocess.Popen(
        [sys.executable, "-m", "native_client", "tail", "general"],
        cwd=ROOT,
        env=cli_env(config),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        status = lines_of(tail.stderr).get(timeout=15)
        assert status == (
            f"subscribed to general at {server.url}: no messages yet; waiting for new ones (Ctrl-C to stop)\n"
        )
    finally:
        tail.kill()
        tail.wait()


def lines_of(stream) -> queue.Queue:
    """Lines of a pipe, readable with a timeout."""
    lines = queue.Queue()
    threading.Thread(target=lambda: [lines.put(line) for line in stream], daemon=True).start()
    return lines
