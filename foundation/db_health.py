"""Database health checks at most once a second per connection, not at every thread hop.

With ``CONN_HEALTH_CHECKS`` (on for PostgreSQL, config/settings.py), Django runs ``SELECT 1``
before the first query that follows each ``close_old_connections()``. Django calls that at the
start and end of every request, and channels' ``database_sync_to_async`` around every thread
hop, so a websocket connect paid one network round trip for the check and one for its own
query (docs/benchmarks.md counted three ``SELECT 1`` per connect and subscribe).

``close_old_connections`` here does what Django's does (drop a connection that outlived
``CONN_MAX_AGE``, that errored and no longer answers, or that was left outside autocommit), and
then skips the coming check when this connection was checked, or opened, less than
``DB_HEALTH_CHECK_INTERVAL`` seconds ago (1 by default), unless the server has sent it
something meanwhile: an idle connection receives nothing until PostgreSQL ends it (a restart,
``pg_terminate_backend`` and a crash all close the socket), and one ``poll()`` of its socket, no
round trip, sees that. What is left: a connection that dies unannounced within that second (its
host gone, the network partitioned; or a restart a moment before the query, before its notice
arrived) is found out by the query that uses it instead of by the check. That one hop fails
(503 / close 1013), its error closes the connection, and the hop after it opens a new one
(tests/test_faults_postgres.py, tests/test_db_health.py).

``DatabaseSyncToAsync`` is channels' hop with this cleanup around it: every hop of the websocket
path and the engine uses it. HTTP requests get it from ``throttle_request_health_checks``.
"""

import select
import time

from channels.db import DatabaseSyncToAsync as ChannelsDatabaseSyncToAsync
from django.conf import settings
from django.core import signals
from django.db import close_old_connections as django_close_old_connections
from django.db import connections


def close_old_connections(**kwargs) -> None:
    """Django's ``close_old_connections``, with each connection's health check throttled."""
    interval = settings.DB_HEALTH_CHECK_INTERVAL
    now = time.monotonic()
    for conn in connections.all(initialized_only=True):
        state = conn.__dict__.setdefault("_native_health", _Health())
        if conn.connection is not None and conn.health_check_done and not state.skipping:
            state.checked_at = now  # checked or opened since the last call (one hop at most ago)
        conn.close_if_unusable_or_obsolete()
        state.skipping = (
            conn.connection is not None
            and conn.health_check_enabled
            and now - state.checked_at < interval
            and not _server_spoke(conn.connection)
        )
        if state.skipping:
            conn.health_check_done = True


def _server_spoke(raw) -> bool:
    """True when the server sent something to this idle connection (or it is gone): check it."""
    try:
        socket = raw.pgconn.socket  # psycopg; raises when the connection is already lost
    except AttributeError:
        return False  # no socket to look at (SQLite)
    except Exception:
        return True
    poller = select.poll()  # not select.select: a busy server's descriptors pass 1024
    poller.register(socket, select.POLLIN | select.POLLERR | select.POLLHUP)
    return bool(poller.poll(0))


class _Health:
    __slots__ = ("checked_at", "skipping")

    def __init__(self):
        self.checked_at = float("-inf")
        self.skipping = False


class DatabaseSyncToAsync(ChannelsDatabaseSyncToAsync):
    """channels' ``database_sync_to_async``, with the health check throttled."""

    def thread_handler(self, loop, *args, **kwargs):
        close_old_connections()
        try:
            # The grandparent's: channels' own would clean up again, unthrottled.
            return super(ChannelsDatabaseSyncToAsync, self).thread_handler(loop, *args, **kwargs)
        finally:
            close_old_connections()


database_sync_to_async = DatabaseSyncToAsync


def throttle_request_health_checks() -> None:
    """Around HTTP requests too: Django's receivers of request_started / request_finished
    replaced by this module's. Called by the server entry points (config.wsgi, config.asgi),
    never at import: Django's test client disconnects its own receiver around each request
    (a test's transaction must survive it) and knows nothing of this one."""
    for signal in (signals.request_started, signals.request_finished):
        signal.disconnect(django_close_old_connections)
        signal.connect(close_old_connections, dispatch_uid="native-close-old-connections")
