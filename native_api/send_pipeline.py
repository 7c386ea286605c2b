"""A socket's ``send`` frames, pipelined: several in flight, answered in order.

A client that sends messages in a row (a chat burst, a bridge, the fan-out bench's sender with
ten in flight) used to wait, for each frame, for a thread hop, its transaction and the
channel-layer publish before the next frame was even read. Here the socket keeps reading: its
send frames queue here, and one task posts everything queued so far in one thread hop
(rooms.posting.post_messages: in frame order, consecutive messages to one room in one
transaction, so the room's order is the frames' order and a burst costs one commit), then
writes the acks and refusals in that same order. The publish to other processes no longer
holds the ack (this process's hub takes it, see live.layer_link).

Any other frame waits until the sends before it are answered (``drain``), so every reply still
comes in the order of the frames that caused it, exactly as when frames were handled one at a
time. The task exists only while sends are waiting: an idle socket costs nothing here.
"""

import asyncio
import logging
from collections import deque

from foundation.db_health import database_sync_to_async
from native_api.errors import UNAVAILABLE_ERRORS
from rooms.posting import post_messages

logger = logging.getLogger(__name__)

MAX_QUEUED = 64  # a socket that queues more than this waits before its next frame is read


class SendPipeline:
    __slots__ = ("_socket", "_queue", "_task")

    def __init__(self, socket):
        self._socket = socket  # native_api.consumer.NativeSocket: user, closed, answer_send()
        self._queue: deque = deque()
        self._task: asyncio.Task | None = None

    @property
    def busy(self) -> bool:
        return self._task is not None

    async def add(self, frame) -> None:
        self._queue.append(frame)
        if self._task is None:
            self._task = asyncio.get_running_loop().create_task(self._post())
        if len(self._queue) >= MAX_QUEUED:
            await self.drain()

    async def drain(self) -> None:
        """Return once every send queued so far has been answered."""
        while self._task is not None:
            await asyncio.shield(self._task)

    async def _post(self) -> None:
        try:
            while self._queue and not self._socket.closed:
                batch = list(self._queue)
                self._queue.clear()
                items = [(f.room, f.body, f.client_id, f.target_user_ids) for f in batch]
                try:
                    results = await database_sync_to_async(post_messages)(self._socket.user, items)
                except UNAVAILABLE_ERRORS as exc:
                    results = [exc] * len(batch)
                for frame, result in zip(batch, results, strict=True):
                    self._socket.answer_send(frame, result)
        except Exception:
            logger.exception("posting a socket's messages failed")
            self._socket.close(1011, "internal_error")
        finally:
            self._queue.clear()
            self._task = None
