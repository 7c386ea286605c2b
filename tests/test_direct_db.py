"""DATABASE_DIRECT_URL: the connections that need a server session of their own (the change
log's LISTEN, the purge lock) go straight to PostgreSQL, past a transaction-mode pooler.

The direct URL here names the test database with an ``application_name`` of its own, so that
pg_stat_activity tells which connection came through which URL.
"""

import asyncio

import psycopg
import pytest
from channels.db import database_sync_to_async

from foundation.changelog import NOTIFY_CHANNEL
from foundation.direct_db import session_connection_params
from tests.conftest import bearer
from tests.faults import open_socket, wait_until
from tests.server import database_url_for_tests
from tokens.purge_lock import ADVISORY_KEY, PostgresAdvisoryLock

pytestmark = pytest.mark.postgres


def direct_url(application_name: str) -> str:
    return f"{database_url_for_tests()}?application_name={application_name}"


def sessions(application_name: str) -> list[tuple[int, str]]:
    with psycopg.connect(database_url_for_tests(), autocommit=True) as conn:
        return conn.execute(
            "SELECT pid, query FROM pg_stat_activity WHERE application_name = %s", [application_name]
        ).fetchall()


def test_without_it_session_connections_use_database_url(db, settings):
    settings.DATABASE_DIRECT_URL = None
    params = session_connection_params()
    assert "application_name" not in params
    with psycopg.connect(**params, autocommit=True) as conn:
        assert (
            conn.execute("SELECT current_database()").fetchone()[0] == settings.DATABASES["default"]["NAME"]
        )


def test_it_takes_the_address_from_the_direct_url_and_the_timeouts_from_the_default_connection(db, settings):
    settings.DATABASE_DIRECT_URL = "postgres://pooled-user@10.9.8.7:6432/elsewhere?application_name=direct"
    params = session_connection_params()
    assert (params["host"], str(params["port"]), params["dbname"]) == ("10.9.8.7", "6432", "elsewhere")
    assert params["user"] == "pooled-user" and params["application_name"] == "direct"
    # What makes a hung server fail fast is kept: connect timeout, keepalives, statement timeout.
    assert params["connect_timeout"] == settings.DATABASES["default"]["OPTIONS"]["connect_timeout"]
    assert params["keepalives"] == 1 and "statement_timeout" in params["options"]


def test_the_purge_lock_is_held_on_a_direct_connection(db, settings):
    settings.DATABASE_DIRECT_URL = direct_url("native-direct-purge")
    lock = PostgresAdvisoryLock()
    assert lock.acquire()
    try:
        with psycopg.connect(database_url_for_tests(), autocommit=True) as conn:
            holder = conn.execute(
                "SELECT a.application_name FROM pg_locks l JOIN pg_stat_activity a ON a.pid = l.pid"
                " WHERE l.locktype = 'advisory' AND ((l.classid::bigint << 32) | l.objid::bigint) = %s",
                [ADVISORY_KEY],
            ).fetchall()
        assert holder == [("native-direct-purge",)]
    finally:
        lock.release()


@pytest.mark.e2e
async def test_a_server_listens_for_the_change_log_over_the_direct_url(server_factory, alice):
    server = server_factory(env={"DATABASE_DIRECT_URL": direct_url("native-direct-listen")})
    socket = await open_socket(server, await database_sync_to_async(bearer)(alice))  # starts the hub
    found = await asyncio.to_thread(
        wait_until,
        lambda: [query for _, query in sessions("native-direct-listen") if query.startswith("LISTEN")],
        timeout=20,
        what="the server's LISTEN session on the direct URL",
    )
    await socket.close()
    assert found == [f"LISTEN {NOTIFY_CHANNEL}"]
