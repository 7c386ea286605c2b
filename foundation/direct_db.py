"""Connections that need a PostgreSQL server session of their own, past any pooler.

LISTEN and session-level advisory locks belong to one server session. PgBouncer in transaction
mode hands each transaction to whichever server connection is free: a LISTEN through it hears
nothing after its own transaction, and a session lock lands on a connection that other clients
then use. So the two users of such a session, the change log's listener (live/pg_listen.py) and
the purge lock (tokens/purge_lock.py), connect with DATABASE_DIRECT_URL when it is set: its
address and credentials (what it leaves out comes from DATABASE_URL), with everything else of
the default connection (connect timeout, keepalives, server-side timeouts).
"""

import dj_database_url
from django.conf import settings
from django.db import connections

# dj-database-url's names -> psycopg's connection parameters
_FIELDS = {"NAME": "dbname", "USER": "user", "PASSWORD": "password", "HOST": "host", "PORT": "port"}


def session_connection_params() -> dict:
    """psycopg.connect() keyword arguments for a connection that keeps its session."""
    params = connections["default"].get_connection_params()
    params.pop("cursor_factory", None)
    params.pop("context", None)
    if settings.DATABASE_DIRECT_URL:
        direct = dj_database_url.parse(settings.DATABASE_DIRECT_URL)
        params.update({name: direct[field] for field, name in _FIELDS.items() if direct.get(field)})
        params.update(direct.get("OPTIONS") or {})
    return params
