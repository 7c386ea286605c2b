"""A clean stop on SIGTERM (and SIGINT) for the ASGI servers, daphne and uvicorn.

On the signal, in this order, on the server's event loop:

1. new HTTP requests are answered 503 ``Connection: close`` and new websockets are closed
   1012 ``restart``: a load balancer or client retries elsewhere;
2. the registered callbacks run (``register``): the websocket side closes every open socket
   with 1012 ``restart`` (API.md: reconnect to another process, resume with ``after``);
3. in-flight HTTP requests get until ``NATIVE_SHUTDOWN_DRAIN`` seconds after the signal to
   finish;
4. the server's own handler runs (daphne: twisted's ``reactor.stop``; uvicorn: its graceful
   shutdown), which closes the listeners and whatever connections are left;
5. a watchdog thread ends the process ``NATIVE_SHUTDOWN_DEADLINE`` seconds after the signal if
   it is still there.

Step 5 is what makes the bound hold. daphne stops its reactor, and with it the asyncio loop,
and then the interpreter joins every non-daemon thread at exit (``concurrent.futures`` joins
all executor workers): a sync view still running, or one blocked in ``async_to_sync`` waiting
for the loop that has just stopped (a channel-layer send from a view, a sync middleware
calling the async chain), is joined forever, and systemd or Kubernetes end the process with
SIGKILL (upstream: django/channels#1119, a daphne that "cannot be restarted through
systemctl" while a sync view hangs, and django/daphne#579; asgiref's and concurrent.futures'
worker threads are joined at exit by design, so the only fix from outside is not to wait for
them past a deadline). uvicorn waits for open connections
without a limit (``timeout_graceful_shutdown`` is unset by default). Neither can be fixed from
the app except by a deadline; gunicorn needs none of this (its arbiter kills workers after
``graceful_timeout``, set in ``gunicorn.conf.py``).

The handlers are installed on the first HTTP or websocket call a real server hands the
application (ASGI scopes from servers carry ``server``), because both servers install their own
SIGTERM handler at start-up, after importing the app: ours wraps theirs and then calls it.
"""

import asyncio
import contextlib
import logging
import os
import signal
import threading
import time
from collections.abc import Awaitable, Callable

from django.conf import settings

logger = logging.getLogger(__name__)

SIGNALS = (signal.SIGTERM, signal.SIGINT)
CALLBACK_TIMEOUT = 3.0  # the registered callbacks, together
CLOSE_FLUSH = 0.5  # lets close frames reach the wire before the server tears connections down

_callbacks: list[Callable[[], Awaitable[None]]] = []


def register(callback: Callable[[], Awaitable[None]]) -> None:
    """Run ``await callback()`` on the server's loop when the process is told to stop."""
    if callback not in _callbacks:
        _callbacks.append(callback)


def unregister(callback: Callable[[], Awaitable[None]]) -> None:
    with contextlib.suppress(ValueError):
        _callbacks.remove(callback)


class Coordinator:
    """One per process: tracks in-flight HTTP requests and runs the stop sequence."""

    def __init__(self):
        self.installed = False
        self.stopping = False
        self.signalled_at: float | None = None
        self.in_flight = 0
        self._idle: asyncio.Event | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._previous: dict[int, object] = {}

    def install(self) -> None:
        """Wrap the server's signal handlers; call on the server's loop, in the main thread."""
        if self.installed or threading.current_thread() is not threading.main_thread():
            return
        self._loop = asyncio.get_running_loop()
        self._idle = asyncio.Event()
        for signum in SIGNALS:
            self._previous[signum] = signal.getsignal(signum)
            signal.signal(signum, self._on_signal)
        self.installed = True

    # --- the application side ------------------------------------------------------------

    def request_started(self) -> None:
        self.in_flight += 1
        self._idle.clear()

    def request_finished(self) -> None:
        self.in_flight -= 1
        if self.in_flight == 0:
            self._idle.set()

    # --- the signal side -----------------------------------------------------------------

    def _on_signal(self, signum, frame) -> None:
        if self.stopping:
            # A second signal: hand over to the server at once (uvicorn's force exit).
            self._call_previous(signum, frame)
            return
        self.stopping = True
        self.signalled_at = time.monotonic()
        deadline = settings.NATIVE_SHUTDOWN_DEADLINE
        threading.Thread(target=_watchdog, args=(deadline,), name="shutdown-watchdog", daemon=True).start()
        logger.info(
            "%s received: closing websockets, draining HTTP requests (exit within %g s)",
            signal.Signals(signum).name,
            deadline,
        )
        self._loop.call_soon_threadsafe(lambda: self._loop.create_task(self._stop(signum, frame)))

    async def _stop(self, signum, frame) -> None:
        try:
            await self._run_callbacks()
            drain_until = self.signalled_at + settings.NATIVE_SHUTDOWN_DRAIN
            if self.in_flight:
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._idle.wait(), max(0.0, drain_until - time.monotonic()))
            if self.in_flight:
                logger.warning("stopping with %d HTTP requests still in flight", self.in_flight)
        except Exception:
            logger.exception("the shutdown sequence failed; stopping anyway")
        self._call_previous(signum, frame)

    async def _run_callbacks(self) -> None:
        if not _callbacks:
            return
        results = asyncio.gather(*(callback() for callback in list(_callbacks)), return_exceptions=True)
        try:
            outcomes = await asyncio.wait_for(results, CALLBACK_TIMEOUT)
        except TimeoutError:
            logger.warning("shutdown callbacks did not finish within %g s", CALLBACK_TIMEOUT)
            return
        for outcome in outcomes:
            if isinstance(outcome, BaseException):
                logger.error("a shutdown callback failed: %r", outcome)
        await asyncio.sleep(CLOSE_FLUSH)

    def _call_previous(self, signum, frame) -> None:
        previous = self._previous.get(signum)
        if callable(previous):
            previous(signum, frame)
        elif previous == signal.SIG_DFL or previous is None:
            signal.signal(signum, signal.SIG_DFL)
            os.kill(os.getpid(), signum)


def _watchdog(deadline: float) -> None:
    time.sleep(deadline)
    alive = [t.name for t in threading.enumerate() if t is not threading.current_thread() and not t.daemon]
    logger.warning("still running %g s after the stop signal (threads: %s); exiting now", deadline, alive)
    logging.shutdown()
    os._exit(0)


coordinator = Coordinator()
