"""PostgreSQL LISTEN for the change log: NOTIFY is sent by the database itself when a change
commits (foundation.changelog), so a server process hears of a change within milliseconds even when the
process that made it could not reach Redis. Best effort: a lost connection only costs latency,
the poller's interval is the floor. LISTEN needs a server session of its own: behind PgBouncer
in transaction mode it connects with DATABASE_DIRECT_URL (foundation/direct_db.py)."""

import logging
import select
import threading

import psycopg

from foundation.changelog import NOTIFY_CHANNEL
from foundation.direct_db import session_connection_params
from live.os_thread import set_os_thread_name

logger = logging.getLogger(__name__)


class Listener:
    def __init__(self, wake: threading.Event, stop: threading.Event):
        self._wake, self._stop = wake, stop
        self._thread = threading.Thread(target=self._run, name="live-listen", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def _run(self) -> None:
        set_os_thread_name("live-listen")
        failing = False
        while not self._stop.is_set():
            try:
                with psycopg.connect(**session_connection_params(), autocommit=True) as conn:
                    conn.execute(f"LISTEN {NOTIFY_CHANNEL}")
                    if failing:
                        failing = False
                        logger.warning("change-log LISTEN connection restored")
                    self._wake.set()  # a NOTIFY may have been missed while we were away
                    # psycopg's notifies() polls the socket every 0.1 s while it waits (ten
                    # wake-ups a second in every idle process): wait on the socket here instead,
                    # then read what came; a second at most, for _stop. poll(), not select():
                    # a process holding thousands of websockets reconnects on a descriptor
                    # above select()'s 1,024.
                    waiting = select.poll()
                    waiting.register(conn.fileno(), select.POLLIN)
                    while not self._stop.is_set():
                        if waiting.poll(1000):
                            for _ in conn.notifies(timeout=0):
                                self._wake.set()
            except Exception as exc:
                if not failing:
                    failing = True
                    logger.warning(
                        "change-log LISTEN connection failed (%s); polling only", type(exc).__name__
                    )
                self._stop.wait(2.0)
