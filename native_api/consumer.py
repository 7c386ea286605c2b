"""The native websocket: authenticate, then subscribe / unsubscribe / send / ping.

A plain ASGI application, one ``NativeSocket`` per connection. It parses frames and replies;
credentials are checked by tokens.verifier, visibility by rooms.visibility, posting by
rooms.posting, and live delivery and enforcement belong to this process's hub (live.hub): the
socket owns no channel-layer channel and no receive task of its own, only its outbox.

Frames from the client are handled one at a time, in order. A subscribe registers with the
hub before it reads the room's head, so anything committed after that read arrives live, and
the hub says when the socket has caught up with the room's feed: that is what makes resume
gapless.
"""

import asyncio
import logging
import time
from collections import deque

from django.conf import settings
from django.utils import timezone

from foundation import metrics
from foundation.db_health import database_sync_to_async
from live import presence
from live.hub import get_hub
from live.outbox import Outbox
from native_api import client_ip, ratelimits, ws_credentials
from native_api.db_threads import in_admission_thread
from native_api.errors import UNAVAILABLE_ERRORS, sentence
from native_api.frame_limiter import FrameLimiter
from native_api.ratelimits import frame_rate
from native_api.schemas import frames
from native_api.send_pipeline import SendPipeline
from rooms.history import seq_range
from rooms.models import Message, Room
from rooms.posting import InvalidMessage, Posted
from rooms.serializers import user_dict
from rooms.visibility import NotAllowed, is_member, message_filter, room_for_member
from tokens.crypto import public_id
from tokens.exceptions import AuthenticationFailed, InactiveUser
from tokens.verifier import consume_ticket, recheck, verify_bearer

logger = logging.getLogger(__name__)

MAX_FRAME = 64 * 1024
MAX_CREDENTIAL = 1024
BAD_FRAME_WINDOW = 60.0
BACKLOG_CHUNK = 200


Close = frames.CloseCode


class FrameError(Exception):
    """A client frame the contract does not allow; answered with an error frame."""

    def __init__(self, detail: str, code: str = "invalid_request", ref=None, **extra):
        super().__init__(detail)
        self.detail, self.code, self.ref, self.extra = detail, code, ref, extra


class ConnectRefused(Exception):
    """Too many connects from this address (4429)."""


def admit(bucket: str, kind: str, raw: str, count_connect: bool):
    """Everything a connect needs from the cache and the database, in one thread hop: the
    connect rate limit and the address's lockout (one round trip to the cache), then the one
    verifier (one to the database). Failures count against the address."""
    if count_connect and ratelimits.ws_connect_refused(bucket):
        raise ConnectRefused()
    try:
        if not isinstance(raw, str) or len(raw) > MAX_CREDENTIAL:
            raise AuthenticationFailed()
        return consume_ticket(raw) if kind == ws_credentials.TICKET else verify_bearer(raw)
    except AuthenticationFailed:
        ratelimits.auth_failed(bucket)
        raise


def subscribe_state(user_id: int, room_id: int) -> tuple[bool, int, int | None]:
    """(still a member, the room's last seq, the last message id ``user_id`` may see up to it)."""
    if not is_member(user_id, room_id):
        return False, 0, None
    head = Room.objects.values_list("last_seq", flat=True).get(pk=room_id)
    last_visible = (
        Message.objects.filter(room_id=room_id, seq__lte=head)
        .filter(message_filter(user_id))
        .order_by("-id")
        .values_list("id", flat=True)
        .first()
    )
    return True, head, last_visible


async def native_socket(scope, receive, send):
    """The ASGI application for /api/ws/native."""
    await NativeSocket(scope, send).run(receive)


class NativeSocket:
    __slots__ = (
        "scope",
        "outbox",
        "hub",
        "connection_id",
        "user",
        "user_id",
        "credential",
        "credential_id",
        "credential_kind",
        "issued_at",
        "client_ip",
        "ip_bucket",
        "opened_at",
        "subscriptions",
        "limiter",
        "bad_frames",
        "timer",
        "closed",
        "sends",
        "__weakref__",
    )

    def __init__(self, scope, send):
        self.scope = scope
        self.outbox = Outbox(send, on_close=self._closing)
        self.hub = None
        self.connection_id = public_id()
        self.user = self.user_id = self.credential = self.credential_id = None
        self.credential_kind = self.issued_at = None
        self.client_ip = client_ip.from_scope(scope)
        self.ip_bucket = client_ip.rate_key(self.client_ip)
        self.opened_at = timezone.now()
        self.subscriptions: dict = {}
        rate, burst = frame_rate()
        self.limiter = FrameLimiter(rate, burst) if rate else None
        self.bad_frames: deque | None = None
        self.timer: asyncio.TimerHandle | None = None
        self.closed = False
        self.sends = SendPipeline(self)

    # --- ASGI ---------------------------------------------------------------------------------

    async def run(self, receive) -> None:
        try:
            message = await receive()
            if message["type"] != "websocket.connect":
                return
            await self.connect()
            while True:
                message = await receive()
                kind = message["type"]
                if kind == "websocket.receive":
                    await self.receive(message.get("text"), message.get("bytes"))
                elif kind == "websocket.disconnect":
                    break
        finally:
            self.closed = True
            self._closing()
            # Leave no cycle (socket ↔ outbox, socket ↔ send pipeline): this socket's objects,
            # and the server's connection they hold, are then freed by reference counting even
            # once live.heap has frozen them out of the garbage collector's walk.
            self.outbox.on_close = None
            self.sends = None

    async def connect(self) -> None:
        self.hub = await get_hub(frames.EngineEncoder)
        self.hub.connected(self)
        await self.outbox._send({"type": "websocket.accept"})
        if self.hub.failing_closed:  # this process cannot know what was revoked: 1013
            return self.close(Close.UNAVAILABLE, "unavailable")
        found = ws_credentials.from_scope(self.scope)
        if found is not None:
            return await self.authenticate(*found, count_connect=True)
        try:
            refused = await in_admission_thread(ratelimits.ws_connect_refused)(self.ip_bucket)
        except UNAVAILABLE_ERRORS:
            refused = False  # the limits fail open when the cache is down (ratelimits.py)
        if refused:
            metrics.rate_limited("ws-connect")
            return self.close(Close.RATE_LIMITED, "rate_limited")
        self._later(settings.NATIVE_WS_AUTH_TIMEOUT, self._auth_timed_out)

    async def authenticate(self, kind: str, raw: str, *, count_connect: bool = False, ref=None) -> None:
        since = self.hub.position()
        try:
            credential = await in_admission_thread(admit)(self.ip_bucket, kind, raw, count_connect)
        except ConnectRefused:
            metrics.rate_limited("ws-connect")
            return self.close(Close.RATE_LIMITED, "rate_limited")
        except InactiveUser as exc:
            metrics.websocket_authentication(exc)
            return self.close(Close.FORBIDDEN, "inactive")
        except AuthenticationFailed as exc:
            metrics.websocket_authentication(exc)
            return self.close(Close.UNAUTHORIZED, "unauthorized")
        except UNAVAILABLE_ERRORS:
            metrics.websocket_authentication(unavailable=True)
            logger.warning("websocket auth failed: a dependency is unavailable")
            return self.close(Close.UNAVAILABLE, "unavailable")
        metrics.websocket_authentication()
        if self.closed:
            return
        if self.hub.failing_closed:
            return self.close(Close.UNAVAILABLE, "unavailable")
        self.credential, self.user, self.user_id = credential, credential.user, credential.user.pk
        self.credential_id, self.credential_kind = credential.id, credential.kind
        self.issued_at = credential.issued_at
        self.hub.register(self)
        # A change that committed while we verified may have been applied before we registered.
        replayed = self.hub.replay(self, since)
        if replayed is None:  # the hub cannot say what it applied meanwhile: ask the database
            try:
                await database_sync_to_async(recheck)(credential)
            except InactiveUser:
                return self.close(Close.FORBIDDEN, "inactive")
            except AuthenticationFailed:
                return self.close(Close.UNAUTHORIZED, "revoked")
            except UNAVAILABLE_ERRORS:
                logger.warning("websocket auth failed: a dependency is unavailable")
                return self.close(Close.UNAVAILABLE, "unavailable")
        if self.closed:
            return
        self._cancel_timer()
        remaining = (credential.expires_at - timezone.now()).total_seconds()
        self._later(max(remaining, 0), self._expired)
        self.send_frame(frames.hello(user_dict(self.user), self.connection_id, ref))

    def presence_entry(self) -> presence.LiveSocket:
        return presence.LiveSocket(
            connection_id=self.connection_id,
            credential_id=self.credential_id,
            user_id=self.user_id,
            process=presence.PROCESS,
            client_ip=self.client_ip,
            opened_at=self.opened_at,
        )

    # --- client frames ------------------------------------------------------------------------

    async def receive(self, text_data=None, bytes_data=None) -> None:
        if self.closed:
            return
        size = len(text_data.encode("utf-8")) if text_data is not None else len(bytes_data or b"")
        limited = size <= MAX_FRAME and self.limiter is not None and not self.limiter.allow()
        frame = invalid = None
        if size <= MAX_FRAME and not limited:
            try:
                frame = frames.decode_client_frame(text_data)
            except frames.InvalidFrame as exc:
                invalid = exc
        if isinstance(frame, frames.SendFrame) and self.user is not None:
            return await self.sends.add(frame)  # answered in order, several per thread hop
        if self.sends.busy:  # every other reply waits for the sends before it
            await self.sends.drain()
            if self.closed:
                return
        if size > MAX_FRAME:
            return self.close(Close.TOO_BIG, "too_big", flush=True)
        if limited:
            metrics.rate_limited("ws-frames")
            if self.limiter.should_close:
                return self.close(Close.RATE_LIMITED, "rate_limited", flush=True)
            return self.send_error("rate_limited", "Too many frames; slow down.")
        ref = None
        try:
            if invalid is not None:
                if self.user is None and invalid.frame_type is not None:
                    return self.close(Close.UNAUTHORIZED, "unauthorized")  # not a usable auth frame
                raise FrameError(invalid.detail, ref=invalid.ref)
            ref = frame.ref
            if self.user is None:
                return await self.first_frame(frame)
            handler = self.HANDLERS.get(type(frame))
            if handler is None:
                raise FrameError(f"Unknown frame type {type(frame).__struct_config__.tag!r}.", ref=ref)
            await handler(self, frame, ref)
        except FrameError as exc:
            self.send_error(exc.code, exc.detail, exc.ref if exc.ref is not None else ref, **exc.extra)
            if exc.code == "invalid_request":
                self.count_bad_frame()
        except UNAVAILABLE_ERRORS:
            logger.warning("websocket frame failed: a dependency is unavailable")
            self.send_error("unavailable", "A service is unavailable; retry later.", ref)

    async def first_frame(self, frame) -> None:
        found = frame.credential() if isinstance(frame, frames.AuthFrame) else None
        if found is None:
            return self.close(Close.UNAUTHORIZED, "unauthorized")
        await self.authenticate(*found, ref=frame.ref)

    async def on_ping(self, frame, ref) -> None:
        self.send_frame(frames.PongFrame(ref=ref))

    async def on_subscribe(self, frame, ref) -> None:
        slug, after = frame.room, frame.after
        hub = self.hub  # the socket may close (and leave the hub) during any await below
        try:
            room = await database_sync_to_async(room_for_member)(self.user, slug)
        except NotAllowed:
            raise FrameError("You are not a member of this room.", "forbidden", room=slug[:64]) from None
        if self.closed:
            return
        current = self.subscriptions.get(room.pk)
        if current is None and len(self.subscriptions) >= settings.NATIVE_WS_MAX_ROOMS:
            raise FrameError(f"At most {settings.NATIVE_WS_MAX_ROOMS} rooms per connection.")
        if current is not None and current.live and after is None:
            # Already live: answer as before, without moving the stream.
            _, _, last_visible = await database_sync_to_async(subscribe_state)(self.user_id, room.pk)
            return self.send_frame(
                frames.SubscribedFrame(room=room.slug, last_message_id=last_visible, ref=ref)
            )
        # Register first: anything committed after the head read below then arrives live.
        sub = await hub.subscribe(self, room.pk, room.slug)
        if self.closed:  # closed while the room's group was joined: it left the hub already
            return hub.unsubscribe(sub)
        member, head, last_visible = await database_sync_to_async(subscribe_state)(self.user_id, room.pk)
        if not member:  # removed between the two reads
            hub.unsubscribe(sub)
            raise FrameError("You are not a member of this room.", "forbidden", room=slug[:64])
        sent_up_to = head
        if after is not None:
            await self.send_backlog(sub, after, 1, head)
        while (ahead := hub.go_live(sub, sent_up_to)) is not None:
            # The room's feed already passed what we read: send the difference, then look again.
            await self.send_backlog(sub, after if after is not None else -1, sent_up_to + 1, ahead)
            sent_up_to = ahead
        # Not if it ended meanwhile (membership removed: the client got unsubscribed instead).
        sub.write(
            frames.encode_frame(frames.SubscribedFrame(room=room.slug, last_message_id=last_visible, ref=ref))
        )

    async def send_backlog(self, sub, after: int, first: int, last: int) -> None:
        """Visible messages with id > after and first <= seq <= last, a chunk at a time (bounded
        memory, and the outbox drains between chunks). A chunk read while the subscription was
        current is written only if it still is: the hub may end it during any await here."""
        while first <= last and not sub.ended and not self.closed:
            chunk = await database_sync_to_async(seq_range)(
                self.user_id, sub.room_id, first, last, after_id=after, limit=BACKLOG_CHUNK
            )
            if sub.ended:
                return
            for _, message in chunk:
                sub.write(frames.encode_message_frame(message))
            metrics.delivered(len(chunk))
            await self.outbox.wait_below(BACKLOG_CHUNK)
            if len(chunk) < BACKLOG_CHUNK:
                return
            first = chunk[-1][0] + 1

    async def on_unsubscribe(self, frame, ref) -> None:
        for sub in list(self.subscriptions.values()):
            if sub.slug == frame.room:
                self.hub.unsubscribe(sub)
        self.send_frame(frames.UnsubscribedFrame(room=frame.room, reason="client", ref=ref))

    def answer_send(self, frame, result) -> None:
        """The reply to one send frame, in order (native_api.send_pipeline): its ack, or why not."""
        ref = frame.ref
        if isinstance(result, Posted):
            message = result.message
            return self.send_frame(frames.AckFrame(id=message["id"], client_id=message["client_id"], ref=ref))
        if isinstance(result, NotAllowed):
            return self.send_error("forbidden", "You are not a member of this room.", ref, room=frame.room)
        if isinstance(result, InvalidMessage):
            self.send_error("invalid_request", sentence(str(result)), ref)
            return self.count_bad_frame()
        logger.warning("websocket frame failed: a dependency is unavailable")
        self.send_error("unavailable", "A service is unavailable; retry later.", ref)

    HANDLERS = {
        frames.SubscribeFrame: on_subscribe,
        frames.UnsubscribeFrame: on_unsubscribe,
        frames.PingFrame: on_ping,
    }

    # --- output and closing -------------------------------------------------------------------

    def send_frame(self, frame: frames.ServerFrame) -> None:
        if not self.closed:
            self.outbox.push(frames.encode_frame(frame))

    def send_error(self, code: str, detail: str, ref=None, room=None) -> None:
        self.send_frame(frames.error(code, detail, ref=ref, room=room))

    def close(self, code: int, reason: str, *, flush: bool = False) -> None:
        """Close. A revocation (the hub's call) drops whatever is still queued: nothing more
        may reach this client. ``flush``: a close the client caused (a flood, a bad frame)
        goes out after the replies already queued, so the client sees why."""
        self.closed = True  # at once: nothing more is queued, and the hub counts it closed
        self.outbox.close(code, reason, flush=flush)

    def _closing(self) -> None:
        """The outbox is closing (any cause, slow consumer included) or the client went away:
        leave the hub at once, so nothing more is delivered to this socket."""
        self.closed = True
        self._cancel_timer()
        if self.hub is not None:
            self.hub.unregister(self)
            self.hub = None

    def count_bad_frame(self) -> None:
        now = time.monotonic()
        if self.bad_frames is None:
            self.bad_frames = deque()
        self.bad_frames.append(now)
        while self.bad_frames and now - self.bad_frames[0] > BAD_FRAME_WINDOW:
            self.bad_frames.popleft()
        if len(self.bad_frames) >= settings.NATIVE_WS_MAX_BAD_FRAMES:
            self.close(Close.PROTOCOL_VIOLATION, "protocol_violation", flush=True)

    # --- timers -------------------------------------------------------------------------------

    def _later(self, delay: float, callback) -> None:
        self._cancel_timer()
        self.timer = asyncio.get_running_loop().call_later(delay, callback)

    def _cancel_timer(self) -> None:
        if self.timer is not None:
            self.timer.cancel()
            self.timer = None

    def _auth_timed_out(self) -> None:
        if self.user is None and not self.closed:
            self.close(Close.AUTH_TIMEOUT, "auth_timeout", flush=True)

    def _expired(self) -> None:
        if not self.closed:
            self.close(Close.UNAUTHORIZED, "expired")
