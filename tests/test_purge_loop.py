"""The purge loop: ``purge_tokens --loop`` and the server's own background purger.

alice's tokens: "expired" ones must disappear by themselves, her live one must stay.
"""

import os
import signal
import subprocess
import sys
import threading
import time
from datetime import timedelta
from unittest import mock

import httpx
import pytest
from channels.testing import HttpCommunicator
from django.db import OperationalError
from django.utils import timezone

from tests.server import QUIET_ENV, ROOT, database_url_for_tests
from tokens import purge_loop
from tokens.login import issue_token
from tokens.models import NativeToken
from tokens.purge import purge
from tokens.purge_loop import PurgeLoop, start_purge_loop_once, stop_purge_loop, with_purge_loop


def expired_token(user) -> NativeToken:
    token = issue_token(user).token
    NativeToken.objects.filter(pk=token.pk).update(expires_at=timezone.now() - timedelta(days=1))
    return token


def wait_until(condition, timeout: float, step: float = 0.1) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if condition():
            return True
        time.sleep(step)
    return condition()


def gone(token) -> bool:
    return not NativeToken.objects.filter(pk=token.pk).exists()


# --- purge_tokens --loop as a process --------------------------------------------------------


def _command_env() -> dict:
    env = {**os.environ, **QUIET_ENV, "DATABASE_URL": database_url_for_tests(), "PYTHONUNBUFFERED": "1"}
    env.pop("DJANGO_SETTINGS_MODULE", None)
    return env


def _read_lines_into(stream, lines: list) -> threading.Thread:
    reader = threading.Thread(target=lambda: lines.extend(stream), daemon=True)
    reader.start()
    return reader


def test_the_loop_purges_then_stops_cleanly_on_sigterm(alice, transactional_db):
    token = expired_token(alice)
    live = issue_token(alice).token
    proc = subprocess.Popen(
        [sys.executable, "manage.py", "purge_tokens", "--loop", "--interval", "1"],
        cwd=ROOT,
        env=_command_env(),
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    lines: list[str] = []
    reader = _read_lines_into(proc.stdout, lines)
    try:
        assert wait_until(lambda: any("rows deleted" in line for line in lines), timeout=30), lines
        assert gone(token) and not gone(live)

        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=5) == 0
    finally:
        if proc.poll() is None:
            proc.kill()
    reader.join(timeout=5)
    assert lines[-1].strip() == "purge_tokens: stopped", lines
    assert "tokens: 1 deleted in 1 batch\n" in lines


# --- the loop in-process ---------------------------------------------------------------------


def _run_in_thread(loop: PurgeLoop) -> threading.Thread:
    thread = threading.Thread(target=loop.run, daemon=True)
    thread.start()
    return thread


def test_the_loop_survives_a_database_error_and_purges_on_the_retry(alice, transactional_db):
    token = expired_token(alice)
    said = []
    calls = []

    def flaky_purge(**kwargs):
        calls.append(kwargs)
        if len(calls) == 1:
            raise OperationalError("server closed the connection unexpectedly")
        return purge(**kwargs)

    loop = PurgeLoop(interval=0.2, say=said.append)
    with mock.patch("tokens.purge_loop.purge", side_effect=flaky_purge):
        thread = _run_in_thread(loop)
        try:
            assert wait_until(lambda: loop.runs >= 1, timeout=10), said
        finally:
            loop.stop()
            thread.join(timeout=5)

    assert not thread.is_alive()
    assert said[0] == "purge_tokens: failed (OperationalError); retrying in 0.2 s"
    assert "tokens: 1 deleted in 1 batch" in said
    assert gone(token)


def test_a_stop_request_ends_a_sleeping_loop_at_once(db):
    loop = PurgeLoop(interval=3600, first_delay=3600)
    thread = _run_in_thread(loop)

    started = time.monotonic()
    loop.stop()
    thread.join(timeout=5)

    assert not thread.is_alive() and time.monotonic() - started < 1
    assert loop.runs == 0


def test_the_loop_skips_a_run_while_another_purger_holds_the_lock(alice, transactional_db):
    from tokens.purge_lock import BUSY_MESSAGE, purge_lock

    token = expired_token(alice)
    said = []
    loop = PurgeLoop(interval=60, say=said.append)
    # The lock is held by another thread, as another process's purger would hold it.
    held, release = threading.Event(), threading.Event()

    def other_purger():
        with purge_lock():
            held.set()
            release.wait(10)

    other = threading.Thread(target=other_purger)
    other.start()
    try:
        assert held.wait(10)
        assert loop.run_once() is None
    finally:
        release.set()
        other.join(10)

    assert said == [BUSY_MESSAGE] and not gone(token)
    assert loop.run_once().rows("tokens") == 1


# --- the server's own loop -------------------------------------------------------------------


@pytest.fixture
def no_server_loop():
    stop_purge_loop()
    yield
    stop_purge_loop()


def test_the_server_loop_starts_once_per_process(db, settings, no_server_loop):
    settings.NATIVE_PURGE_INTERVAL = 3600

    first = start_purge_loop_once()
    again = start_purge_loop_once()

    assert first is not None and again is first
    assert [t.name for t in threading.enumerate()].count("purge-tokens") == 1
    assert 0 <= first.first_delay <= 60  # jittered, so that servers started together spread out


def test_an_interval_of_zero_turns_the_server_loop_off(db, settings, no_server_loop):
    settings.NATIVE_PURGE_INTERVAL = 0

    assert start_purge_loop_once() is None
    assert "purge-tokens" not in [t.name for t in threading.enumerate()]


async def test_driving_the_app_in_process_starts_no_purger(settings, no_server_loop):
    """Test communicators put no ``server`` in the scope: only a real ASGI server starts it."""
    settings.NATIVE_PURGE_INTERVAL = 3600
    calls = []

    async def app(scope, receive, send):
        calls.append(scope["type"])
        await send({"type": "http.response.start", "status": 204, "headers": []})
        await send({"type": "http.response.body", "body": b""})

    response = await HttpCommunicator(with_purge_loop(app), "GET", "/").get_response()

    assert response["status"] == 204 and calls == ["http"]
    assert purge_loop._server_loop is None


@pytest.mark.e2e
@pytest.mark.parametrize("server_kind", ["daphne", "uvicorn"])
def test_a_server_purges_expired_tokens_by_itself(alice, server_factory, server_kind):
    token = expired_token(alice)
    live = issue_token(alice).raw
    server = server_factory(
        env={"NATIVE_PURGE_INTERVAL": "1"}, server=server_kind, name=f"purging-{server_kind}"
    )

    assert (
        httpx.get(f"{server.url}/api/native/me", headers={"Authorization": f"Bearer {live}"}).status_code
        == 200
    )
    assert wait_until(lambda: gone(token), timeout=15), server.log()
    assert NativeToken.objects.filter(user=alice).count() == 1
    assert "purging expired credentials in this process every 1 s" in server.log()
