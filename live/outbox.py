"""A socket's outgoing frames: one FIFO, written by one writer, bounded in frames and bytes.

Everything a socket sends goes through its outbox, whoever produced it (its own replies, or the
hub's fan-out), so frames leave in the order they were queued. ``push`` never blocks: the hub
writes a room's message to hundreds of sockets in one go, and a socket whose client stops
reading must not slow the others. Its queue then grows; once it stays over the bounds (frames
or bytes) for NATIVE_WS_SEND_GRACE seconds, or goes 16 times over at once, the socket is closed
4429 ``slow_consumer``. (Under daphne the ASGI send never waits, so the bytes pile up in twisted
instead; config/daphne_compat.py applies the same bounds there.)

The writer is a task that exists only while frames are waiting: an idle socket costs no task.
"""

import asyncio
import contextlib
import logging
import time

from django.conf import settings

logger = logging.getLogger(__name__)

HARD_LIMIT_FACTOR = 16


class Outbox:
    __slots__ = (
        "_send",
        "_frames",
        "_pending",
        "_bytes",
        "_writer",
        "_over_since",
        "_close_after",
        "closing",
        "on_close",
        "_room",
    )

    def __init__(self, send, on_close=None):
        self._send = send
        self._frames: list[str] = []  # waiting, not yet taken by the writer
        self._pending = 0  # frames queued and not yet sent (the writer's current batch included)
        self._bytes = 0
        self._writer: asyncio.Task | None = None
        self._over_since: float | None = None
        self._close_after: tuple[int, str] | None = None
        self.closing = False
        self.on_close = on_close  # called once, when the outbox starts closing (any cause)
        self._room: tuple[int, asyncio.Future] | None = None  # a producer waiting for room

    def push(self, text: str) -> None:
        if self.closing:
            return
        self._frames.append(text)
        self._pending += 1
        self._bytes += len(text)
        if self._over():
            self._over_limit()
            if self.closing:
                return
        if self._writer is None:
            if len(self._frames) == 1:
                self._send_now()
            else:
                self._writer = asyncio.get_running_loop().create_task(self._write())

    def _send_now(self) -> None:
        """Send the one queued frame without creating a task, when the server's send completes
        at once (daphne's always does; uvicorn's unless the client is behind). A fan-out writes
        to every local subscriber in one go, so a task per frame would be most of its cost."""
        text = self._frames.pop()
        send = self._send({"type": "websocket.send", "text": text})
        try:
            yielded = send.send(None)
        except StopIteration:
            self._sent(text)
            return
        except Exception:
            self._gone()
            return
        # It suspended (the transport is paused): a task finishes it, then sends what follows.
        self._writer = asyncio.get_running_loop().create_task(self._write((send, yielded, text)))

    def close(self, code: int, reason: str, *, flush: bool = False) -> None:
        """Close the websocket. ``flush``: after the frames already queued (an error frame that
        explains the close); otherwise at once, dropping them (a revocation: nothing more may
        reach this client)."""
        if self.closing:
            return
        self.closing = True
        self._wake_producer()
        if self.on_close is not None:
            # Soon, not now: we may be inside the hub's loop over a room's subscribers, which
            # on_close (leaving the hub) would change under its feet.
            asyncio.get_running_loop().call_soon(self.on_close)
        if flush:
            self._close_after = (code, reason)
            if self._writer is None:
                self._writer = asyncio.get_running_loop().create_task(self._write())
            return
        self._frames, self._pending, self._bytes = [], 0, 0
        writer, self._writer = self._writer, None
        if writer is not None and writer is not asyncio.current_task():
            writer.cancel()  # a send stuck on a client that does not read must not delay the close
        asyncio.get_running_loop().create_task(self._send_close(code, reason))

    @property
    def queued(self) -> int:
        return self._pending

    async def wait_below(self, frames: int) -> None:
        """Wait until at most ``frames`` are queued (a backlog producer pacing itself)."""
        while self._pending > frames and not self.closing:
            future = asyncio.get_running_loop().create_future()
            self._room = (frames, future)
            await future

    async def _write(self, suspended=None) -> None:
        try:
            if suspended is not None:
                send, yielded, text = suspended
                try:
                    await _finish(send, yielded)
                except asyncio.CancelledError:
                    raise
                except Exception:
                    return self._gone()
                self._sent(text)
            while self._frames:
                batch, self._frames = self._frames, []
                for index, text in enumerate(batch):
                    try:
                        await self._send({"type": "websocket.send", "text": text})
                    except Exception:
                        return self._gone()
                    self._sent(text)
                    if index % 256 == 255:
                        await asyncio.sleep(0)  # let the event loop breathe during a long backlog
            if self._close_after is not None:
                code, reason = self._close_after
                self._close_after = None
                await self._send_close(code, reason)
        finally:
            if self._writer is asyncio.current_task():
                self._writer = None

    def _sent(self, text: str) -> None:
        self._pending -= 1
        self._bytes -= len(text)
        if self._over_since is not None and not self._over():
            self._over_since = None  # drained below the bounds: forgiven
        if self._room is not None and self._pending <= self._room[0]:
            self._wake_producer()

    def _gone(self) -> None:
        """The connection is gone (servers raise on a closed socket): drop the rest; the
        disconnect event ends the socket."""
        self._frames, self._pending, self._bytes = [], 0, 0
        self.closing = True
        self._wake_producer()

    def _wake_producer(self) -> None:
        room, self._room = self._room, None
        if room is not None and not room[1].done():
            room[1].set_result(None)

    async def _send_close(self, code: int, reason: str) -> None:
        with contextlib.suppress(Exception):  # already closed
            await self._send({"type": "websocket.close", "code": code, "reason": reason})

    def _over(self) -> bool:
        return self._pending > settings.NATIVE_WS_SEND_QUEUE or self._bytes > settings.NATIVE_WS_SEND_BUFFER

    def _over_limit(self) -> None:
        now = time.monotonic()
        if self._over_since is None:
            self._over_since = now
            # Look again when the grace ends, even if nothing more is pushed by then.
            asyncio.get_running_loop().call_later(settings.NATIVE_WS_SEND_GRACE + 0.05, self._recheck)
        hard = (
            self._pending > HARD_LIMIT_FACTOR * settings.NATIVE_WS_SEND_QUEUE
            or self._bytes > HARD_LIMIT_FACTOR * settings.NATIVE_WS_SEND_BUFFER
        )
        if hard or now - self._over_since >= settings.NATIVE_WS_SEND_GRACE:
            logger.warning(
                "websocket closed: slow consumer, %d frames / %d bytes unsent", self._pending, self._bytes
            )
            self.close(4429, "slow_consumer")

    def _recheck(self) -> None:
        if self.closing or self._over_since is None:
            return
        if self._over():
            self._over_limit()
        else:
            self._over_since = None


async def _finish(coroutine, yielded) -> None:
    """Drive a coroutine that was started by hand (Outbox._send_now) and suspended on
    ``yielded``, as an asyncio task would: wait for what it waits for, resume it, repeat."""
    while True:
        try:
            if yielded is None:
                await asyncio.sleep(0)  # a bare yield: give the loop one turn
            else:
                # The coroutine's own await marked the future as being waited on, for a task
                # that never saw it; clear the mark, then wait on it here as that task would.
                yielded._asyncio_future_blocking = False
                await yielded
        except asyncio.CancelledError:
            coroutine.close()
            raise
        except BaseException as exc:
            try:
                yielded = coroutine.throw(exc)
            except StopIteration:
                return
            continue
        try:
            yielded = coroutine.send(None)
        except StopIteration:
            return
