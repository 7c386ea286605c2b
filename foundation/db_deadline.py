"""A client-side deadline on every PostgreSQL round trip.

The server-side ``statement_timeout`` (settings.py) ends a query that runs too long, and TCP
keepalives end a connection whose peer has vanished. Neither helps when the server is there
but does not answer (a frozen or swapped-out backend, a stalled disk, a proxy that black-holes
traffic while its kernel still ACKs): psycopg then waits on the socket forever, and so does the
worker and the request. psycopg's ``Connection.wait`` takes a timeout that its own callers leave
unset; here each new connection gets ``DB_QUERY_DEADLINE`` as that default. A round trip past
it raises ``OperationalError`` (the API answers 503) and the connection is closed, never reused
in an unknown state. Installed on ``connection_created``, so it covers pooled and persistent
connections, Django's health checks and the pool's, not only ORM queries.
"""

import logging

from django.conf import settings

logger = logging.getLogger(__name__)


def install(sender, connection, **kwargs) -> None:
    """``connection_created`` receiver."""
    deadline = getattr(settings, "DB_QUERY_DEADLINE", None)
    raw = connection.connection
    if connection.vendor != "postgresql" or not deadline or getattr(raw, "_native_deadline", None):
        return
    raw._native_deadline = deadline
    raw.wait = _bounded(raw, raw.wait, deadline)


def _bounded(raw, wait, deadline: float):
    import psycopg

    def bounded_wait(gen, *args, **kwargs):
        if len(args) < 2:  # wait(gen, interval=…, timeout=…): only fill a timeout left unset
            kwargs.setdefault("timeout", deadline)
        try:
            return wait(gen, *args, **kwargs)
        except psycopg.errors._WaitTimeout:  # psycopg's own timeout exception (an OperationalError)
            logger.error("PostgreSQL did not answer within %g s: closing the connection", deadline)
            raw.pgconn.finish()
            raise psycopg.OperationalError(f"PostgreSQL did not answer within {deadline:g} s") from None

    return bounded_wait
