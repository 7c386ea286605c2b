"""A PostgreSQL that hangs fails requests with 503 in bounded time; it never hangs a worker.

Under gunicorn (one sync worker, so the request surely uses the worker's persistent
connection, already open): a query stuck behind a lock ends at ``statement_timeout``; a server
that stops answering a connection already in use (every process of the cluster frozen) costs
``DB_QUERY_DEADLINE`` plus ``DB_CONNECT_TIMEOUT``; both answer the contract's 503.
"""

import contextlib
import os
import signal
import time

import httpx
import psutil
import pytest

from tests.faults import PrivatePostgres, manage, wait_until

pytestmark = [pytest.mark.e2e, pytest.mark.postgres, pytest.mark.slow]

TIMEOUTS = {"DB_STATEMENT_TIMEOUT": "1", "DB_QUERY_DEADLINE": "2", "DB_CONNECT_TIMEOUT": "2"}
BOUND = 12.0  # 2 s deadline + 2 s connect timeout, with room for a loaded CI machine

MINT = """
from django.contrib.auth import get_user_model
from tokens.login import issue_token
print(issue_token(get_user_model().objects.create_user("alice")).raw)
"""


@pytest.fixture(scope="module")
def cluster():
    pg = PrivatePostgres()
    try:
        pg.start()
        pg.sql("CREATE DATABASE native")
        manage({"DATABASE_URL": pg.url("native")}, "migrate", "--noinput", "-v", "0")
        yield pg
    finally:
        pg.destroy()


@pytest.fixture(scope="module")
def token(cluster):
    return manage({"DATABASE_URL": cluster.url("native")}, "shell", "-c", MINT).strip().splitlines()[-1]


@pytest.fixture
def gunicorn(server_factory, cluster):
    env = {"DATABASE_URL": cluster.url("native"), "REDIS_PREFIX": "native-db-timeouts", **TIMEOUTS}
    return server_factory(env=env, server="gunicorn", name="db-timeouts", workers=1)


def cluster_processes(pg) -> list[psutil.Process]:
    postmaster = psutil.Process(pg.postmaster_pid())
    return [postmaster, *postmaster.children(recursive=True)]


@contextlib.contextmanager
def frozen(pg):
    """Every process of the cluster stopped: the kernel still ACKs, nobody answers."""
    stopped = cluster_processes(pg)
    for process in stopped:
        os.kill(process.pid, signal.SIGSTOP)
    try:
        yield
    finally:
        for process in stopped:
            with contextlib.suppress(ProcessLookupError):
                os.kill(process.pid, signal.SIGCONT)


def me(server, token, timeout=30.0):
    started = time.monotonic()
    response = httpx.get(
        f"{server.url}/api/native/me", headers={"Authorization": f"Bearer {token}"}, timeout=timeout
    )
    return response, time.monotonic() - started


def test_a_query_stuck_behind_a_lock_ends_at_the_statement_timeout_with_503(cluster, gunicorn, token):
    import psycopg

    assert me(gunicorn, token)[0].status_code == 200
    with psycopg.connect(cluster.url("native"), connect_timeout=5) as blocker:
        blocker.execute("LOCK TABLE tokens_nativetoken IN ACCESS EXCLUSIVE MODE")
        response, elapsed = me(gunicorn, token)
    assert response.status_code == 503 and response.json()["error"] == "unavailable"
    assert 0.9 <= elapsed < BOUND, elapsed
    assert me(gunicorn, token)[0].status_code == 200  # the lock is gone, so is the problem


def test_a_server_that_stops_answering_a_connection_in_use_costs_a_bounded_503(cluster, gunicorn, token):
    for _ in range(2):  # the worker now holds its persistent connection
        assert me(gunicorn, token)[0].status_code == 200
    with frozen(cluster):
        response, elapsed = me(gunicorn, token)
    assert response.status_code == 503 and response.json()["error"] == "unavailable"
    assert 1.5 <= elapsed < BOUND, elapsed
    assert "did not answer within 2 s" in gunicorn.log()
    wait_until(lambda: me(gunicorn, token, timeout=10)[0].status_code == 200, timeout=15, what="recovery")
