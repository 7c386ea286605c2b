"""The change log's LISTEN (live/pg_listen.py): a NOTIFY wakes the poller within milliseconds,
and a LISTEN connection the database ended comes back by itself."""

import os
import resource
import threading
import time

import psycopg
import pytest

from foundation.changelog import NOTIFY_CHANNEL
from live.pg_listen import Listener
from tests.faults import wait_until
from tests.server import database_url_for_tests
from tests.test_direct_db import direct_url, sessions

pytestmark = pytest.mark.postgres

NAME = "native-listen-test"


def listening() -> list[int]:
    return [pid for pid, query in sessions(NAME) if query.startswith("LISTEN")]


def notify_and_time(wake: threading.Event) -> float:
    wake.clear()
    with psycopg.connect(database_url_for_tests(), autocommit=True) as conn:
        started = time.monotonic()
        conn.execute(f"NOTIFY {NOTIFY_CHANNEL}")
    assert wake.wait(2.0), "the NOTIFY did not wake the poller"
    return time.monotonic() - started


def test_a_notify_wakes_the_poller_at_once_and_a_lost_listen_connection_comes_back(db, settings):
    settings.DATABASE_DIRECT_URL = direct_url(NAME)
    wake, stop = threading.Event(), threading.Event()
    Listener(wake, stop).start()
    try:
        wait_until(lambda: listening(), timeout=5, what="the LISTEN session")
        assert wake.wait(2.0)  # set once on connecting: a NOTIFY may have been missed before
        first = listening()[0]

        assert notify_and_time(wake) < 0.3  # not the poller's interval (0.5 s)

        with psycopg.connect(database_url_for_tests(), autocommit=True) as conn:
            conn.execute("SELECT pg_terminate_backend(%s)", [first])
        wait_until(lambda: listening() and listening()[0] != first, timeout=8, what="a new LISTEN session")
        assert notify_and_time(wake) < 0.3
    finally:
        stop.set()
    wait_until(lambda: not sessions(NAME), timeout=5, what="the listener's exit")


def test_a_listen_connection_on_a_descriptor_above_1024_still_wakes_the_poller(db, settings):
    """A server holding thousands of websockets opens its LISTEN connection (again, after a lost
    one) on a high descriptor, past what select() can watch."""
    settings.DATABASE_DIRECT_URL = direct_url(NAME)
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (min(hard, 4096), hard))
    taken = [os.dup(0) for _ in range(1100)]  # what the websockets hold
    wake, stop = threading.Event(), threading.Event()
    try:
        Listener(wake, stop).start()
        wait_until(lambda: listening(), timeout=5, what="the LISTEN session")
        assert wake.wait(2.0)
        assert notify_and_time(wake) < 0.3
    finally:
        stop.set()
        for fd in taken:
            os.close(fd)
        wait_until(lambda: not sessions(NAME), timeout=5, what="the listener's exit")
        resource.setrlimit(resource.RLIMIT_NOFILE, (soft, hard))
