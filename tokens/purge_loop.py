"""The purge loop, without Celery or cron: ``purge_tokens --loop`` runs it in the foreground,
and each server process runs it in a background thread.

A thread, not an asyncio task: the purge is synchronous ORM work and must never block the
server's event loop. daphne sends no ASGI lifespan events, so the thread starts on the first
HTTP or websocket call that an ASGI server hands the application (see ``with_purge_loop``),
which works the same under daphne and uvicorn and never in a ``manage.py`` command or a test
that merely imports config.asgi.
"""

import logging
import random
import threading
import time
from collections.abc import Callable

from django.conf import settings
from django.db import close_old_connections, connections

from foundation import metrics
from tokens.purge import DEFAULT_BATCH_SIZE, PurgeReport, purge
from tokens.purge_lock import BUSY_MESSAGE, purge_lock

logger = logging.getLogger(__name__)

POLL_SECONDS = 0.25  # how quickly a sleeping loop notices a stop request
FIRST_BACKOFF = 1.0
MAX_BACKOFF = 300.0
MAX_JITTER = 60.0  # a server's first run waits a random 0..min(interval, this) seconds


class PurgeLoop:
    def __init__(
        self,
        *,
        interval: float,
        batch_size: int = DEFAULT_BATCH_SIZE,
        first_delay: float = 0.0,
        say: Callable[[str], None] | None = None,
    ):
        self.interval = interval
        self.batch_size = batch_size
        self.first_delay = first_delay
        self.runs = 0  # completed purges (not skips, not failures)
        self._say = say or logger.info
        self._stop_requested = False
        self._wake = threading.Event()

    def request_stop(self) -> None:
        """Safe in a signal handler: it only sets a flag (taking a lock there could deadlock
        the thread it interrupted); the loop sees it between batches and while sleeping."""
        self._stop_requested = True

    def stop(self) -> None:
        """From another thread: stop, and wake the loop at once if it sleeps."""
        self._stop_requested = True
        self._wake.set()

    @property
    def stopping(self) -> bool:
        return self._stop_requested

    def run(self) -> None:
        """Purge every ``interval`` seconds until stopped; failures are retried with backoff."""
        failures = 0
        delay = self.first_delay
        while self._sleep(delay):
            try:
                self.run_once()
            except Exception as exc:
                failures += 1
                delay = min(self.interval, MAX_BACKOFF, FIRST_BACKOFF * 2 ** (failures - 1))
                # The whole traceback once; then one line per retry while the outage lasts.
                log = logger.exception if failures == 1 else logger.warning
                log("purge_tokens failed (%s: %s); retrying in %g s", type(exc).__name__, exc, delay)
                self._say(f"purge_tokens: failed ({type(exc).__name__}); retrying in {delay:g} s")
            else:
                failures = 0
                delay = self.interval

    def run_once(self) -> PurgeReport | None:
        """One purge under the single-runner lock; None when another purger holds it."""
        close_old_connections()
        try:
            with purge_lock() as lock:
                if lock is None:
                    metrics.purge_not_run("skipped")
                    self._say(BUSY_MESSAGE)
                    return None
                report = purge(
                    batch_size=self.batch_size,
                    keep_going=lambda: not self.stopping,
                    after_batch=lock.refresh,
                )
        finally:
            # Also drops a connection broken by an outage, so the next try opens a fresh one;
            # a loop that sleeps an hour should not hold a connection meanwhile either.
            _close_connections()
        self.runs += 1
        for line in report.lines():
            self._say(line)
        return report

    def _sleep(self, seconds: float) -> bool:
        """Sleep unless stopped; False once a stop was requested."""
        deadline = time.monotonic() + seconds
        while not self._stop_requested:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                return True
            self._wake.wait(min(remaining, POLL_SECONDS))
        return False


def _close_connections() -> None:
    try:
        connections.close_all()  # this thread's connections only
    except Exception:
        logger.debug("closing a broken database connection failed", exc_info=True)


# --- the server's own loop -------------------------------------------------------------------

_start_lock = threading.Lock()
_server_loop: PurgeLoop | None = None
_server_thread: threading.Thread | None = None


def start_purge_loop_once() -> PurgeLoop | None:
    """Start this process's background purge thread, once; None when NATIVE_PURGE_INTERVAL is 0."""
    global _server_loop, _server_thread
    if _server_loop is not None:
        return _server_loop
    interval = settings.NATIVE_PURGE_INTERVAL
    if not interval:
        return None
    with _start_lock:
        if _server_loop is None:
            # Servers started together (a deploy) should not all try at the same instant.
            loop = PurgeLoop(interval=interval, first_delay=random.uniform(0, min(interval, MAX_JITTER)))
            thread = threading.Thread(target=_run_quietly, args=(loop,), name="purge-tokens", daemon=True)
            thread.start()
            _server_loop, _server_thread = loop, thread
            logger.info("purging expired credentials in this process every %s s", interval)
    return _server_loop


def stop_purge_loop(timeout: float = 10.0) -> None:
    """Stop this process's background purge thread (tests; a clean shutdown)."""
    global _server_loop, _server_thread
    with _start_lock:
        loop, thread = _server_loop, _server_thread
        _server_loop = _server_thread = None
    if loop is not None:
        loop.stop()
        thread.join(timeout)


def _run_quietly(loop: PurgeLoop) -> None:
    try:
        loop.run()
    except BaseException:  # the loop catches its own failures; this is the last line of defence
        logger.exception("the background purge loop stopped")


def with_purge_loop(app):
    """Wrap an ASGI application so that the first call from a real server starts the loop.

    ASGI servers (daphne, uvicorn) put ``server`` in every HTTP and websocket scope; the
    in-process test communicators do not, so tests that drive the app never start a purger,
    and neither does uvicorn's lifespan call, which carries no ``server`` either.
    """

    async def application(scope, receive, send):
        if _server_loop is None and "server" in scope:
            try:
                start_purge_loop_once()
            except Exception:  # never let housekeeping fail a request
                logger.exception("could not start the background purge loop")
        return await app(scope, receive, send)

    return application
