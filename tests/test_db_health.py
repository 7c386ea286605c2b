"""foundation.db_health: the connection health check at most once a second per connection, and
still at once when the server has ended the connection meanwhile.

Each test plays the thread hops of a server (close_old_connections, a query, close_old_connections)
on the test's own connection, with the clock in hand. The end-to-end side (a restarted PostgreSQL
under a running server) is tests/test_faults_postgres.py's.
"""

import pytest
from django.db import connection, connections

from foundation import db_health

pytestmark = pytest.mark.django_db(transaction=True)


@pytest.fixture
def checks(monkeypatch):
    """Health checks on (SQLite has them off), counted; a connection opened at 1000 s on a clock
    moved by hand, and not used since: at 1010 s, when each test starts, it is due a check."""
    connection.close()
    monkeypatch.setattr(db_health.time, "monotonic", lambda: clock["now"])
    clock = {"now": 1000.0}
    connection.ensure_connection()
    monkeypatch.setattr(connection, "health_check_enabled", True)
    counted = {"checks": 0}
    real = connection.is_usable

    def is_usable():
        counted["checks"] += 1
        return real()

    monkeypatch.setattr(connection, "is_usable", is_usable)
    connections["default"].__dict__.pop("_native_health", None)
    db_health.close_old_connections()  # the end of the hop that opened it
    clock["now"] = 1010.0
    counted["clock"] = clock
    yield counted
    connections["default"].__dict__.pop("_native_health", None)


def hop():
    """What a thread hop does with the database: clean up, one query, clean up."""
    db_health.close_old_connections()
    with connection.cursor() as cursor:
        cursor.execute("SELECT 2")
        assert cursor.fetchone() == (2,)
    db_health.close_old_connections()


def test_hops_within_a_second_share_one_check(checks):
    for _ in range(5):
        hop()
        checks["clock"]["now"] += 0.15
    assert checks["checks"] == 1


def test_a_connection_idle_for_a_second_is_checked_again(checks):
    hop()
    checks["clock"]["now"] += 1.01
    hop()
    hop()
    assert checks["checks"] == 2


def test_an_interval_of_zero_checks_at_every_hop(checks, settings):
    settings.DB_HEALTH_CHECK_INTERVAL = 0
    for _ in range(3):
        hop()
    assert checks["checks"] == 3


def test_djangos_own_cleanup_checks_at_every_hop(checks):
    """The baseline this module improves on: what every request and hop paid before."""
    from django.db import close_old_connections

    for _ in range(3):
        close_old_connections()
        with connection.cursor() as cursor:
            cursor.execute("SELECT 2")
    assert checks["checks"] == 3


@pytest.mark.postgres
def test_a_connection_the_server_ended_is_noticed_before_use_even_within_the_second(checks):
    hop()
    pid = connection.connection.info.backend_pid
    other = connections.create_connection("default")
    try:
        with other.cursor() as cursor:
            cursor.execute("SELECT pg_terminate_backend(%s)", [pid])
    finally:
        other.close()
    _wait_for_the_notice(connection.connection)
    checks["clock"]["now"] += 0.1
    hop()  # no error: the check ran, failed, and the connection was replaced before the query
    assert checks["checks"] == 2
    assert connection.connection.info.backend_pid != pid


def _wait_for_the_notice(raw, timeout=5.0) -> None:
    import select

    poller = select.poll()
    poller.register(raw.pgconn.socket, select.POLLIN)
    assert poller.poll(timeout * 1000), "the server's FATAL notice never arrived"


def test_a_fresh_connection_counts_as_checked(checks):
    hop()
    connection.close()
    checks["clock"]["now"] += 5
    hop()  # opens a new connection: that is its check
    checks["clock"]["now"] += 0.2
    hop()
    assert checks["checks"] == 1
