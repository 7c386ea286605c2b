"""The native websocket: authenticate, then subscribe / unsubscribe / send / ping.

The consumer parses frames and replies; credentials are checked by tokens.verifier, visibility
by rooms.visibility, posting by rooms.posting. Channels handles one event at a time per
consumer, so a subscribe's backlog query finishes before any live event for that room is
looked at: that, plus RoomStream's seq bookkeeping, is what makes resume gapless.
"""

import asyncio
import contextlib
import json
import logging
import time
from collections import deque

from asgiref.sync import sync_to_async
from channels.consumer import get_handler_name
from channels.db import database_sync_to_async
from channels.generic.websocket import AsyncWebsocketConsumer
from django.conf import settings
from django.utils import timezone
from redis.exceptions import RedisError

from live import presence
from native_api import client_ip, metrics, ratelimits, ws_credentials
from native_api.errors import UNAVAILABLE_ERRORS
from native_api.frame_limiter import FrameLimiter
from native_api.ratelimits import frame_rate
from native_api.requests import UNSTORABLE_TEXT, has_unstorable_text
from native_api.room_stream import RoomStream
from rooms.history import seq_range
from rooms.models import Message, Room
from rooms.posting import InvalidMessage, post_message, room_group
from rooms.serializers import user_dict
from rooms.visibility import NotAllowed, may_see_event, message_filter, room_for_member
from tokens.crypto import public_id
from tokens.exceptions import AuthenticationFailed, InactiveUser
from tokens.live import credential_group, user_group
from tokens.verifier import consume_ticket, still_valid, verify_bearer

logger = logging.getLogger(__name__)

MAX_FRAME = 64 * 1024
MAX_REF = 64
BAD_FRAME_WINDOW = 60.0


class Close:
    PROTOCOL = 4400
    UNAUTHORIZED = 4401
    FORBIDDEN = 4403
    AUTH_TIMEOUT = 4408
    RATE_LIMITED = 4429
    TOO_BIG = 1009
    UNAVAILABLE = 1013


class FrameError(Exception):
    """A client frame the contract does not allow; answered with an error frame."""

    def __init__(self, detail: str, code: str = "invalid_request", **extra):
        super().__init__(detail)
        self.detail, self.code, self.extra = detail, code, extra


def _verify(kind: str, raw: str):
    if len(raw) > 1024:
        raise AuthenticationFailed()
    return consume_ticket(raw) if kind == ws_credentials.TICKET else verify_bearer(raw)


BACKLOG_CHUNK = 200


def _room_head(user_id: int, room_id: int) -> tuple[int, int | None]:
    """(the room's last seq, the last message id ``user_id`` may see up to that seq)."""
    head = Room.objects.values_list("last_seq", flat=True).get(pk=room_id)
    last_visible = (
        Message.objects.filter(room_id=room_id, seq__lte=head)
        .filter(message_filter(user_id))
        .order_by("-id")
        .values_list("id", flat=True)
        .first()
    )
    return head, last_visible


class NativeConsumer(AsyncWebsocketConsumer):
    async def __call__(self, scope, receive, send):
        # channels_redis raises out of the consumer's receive loop (or a group_add) when Redis
        # is gone; unhandled, that is a traceback per socket and a bare 1011. Close with the
        # contract's "unavailable" instead: clients reconnect, and the log says why, once.
        try:
            await super().__call__(scope, receive, send)
        except RedisError as exc:
            logger.warning("websocket closed: the channel layer is unavailable (%s)", type(exc).__name__)
            if not getattr(self, "closed", False):  # unset if it failed before connect()
                self.closed = True
                await self.close(code=Close.UNAVAILABLE, reason="unavailable")

    async def connect(self):
        self.user = None
        self.credential = None
        self.connection_id = public_id()
        self.streams: dict[int, RoomStream] = {}
        self.groups_joined: set[str] = set()
        self.timers: list[asyncio.TimerHandle] = []
        self.bad_frames: deque[float] = deque()
        rate, burst = frame_rate()
        self.limiter = FrameLimiter(rate, burst) if rate else None
        self.closed = False
        await self.accept()
        self.ip_bucket = client_ip.rate_key(client_ip.from_scope(self.scope))
        # thread_sensitive=False: a slow cache must not hold up the thread that runs ORM work.
        if await sync_to_async(ratelimits.ws_connect_refused, thread_sensitive=False)(self.ip_bucket):
            return await self.close_with(Close.RATE_LIMITED, "rate_limited")
        found = ws_credentials.from_scope(self.scope)
        if found is not None:
            await self.authenticate(*found)
        else:
            self.later(settings.NATIVE_WS_AUTH_TIMEOUT, self.auth_timed_out)

    async def authenticate(self, kind: str, raw: str):
        try:
            credential = await database_sync_to_async(_verify)(kind, raw)
            for group in (credential_group(credential.id), user_group(credential.user.pk)):
                await self.join(group)
            # A revocation that landed between verifying and joining the groups was not heard.
            if not await database_sync_to_async(still_valid)(credential):
                raise AuthenticationFailed()
        except InactiveUser as exc:
            metrics.websocket_authentication(exc)
            return await self.close_with(Close.FORBIDDEN, "inactive")
        except AuthenticationFailed as exc:
            metrics.websocket_authentication(exc)
            await sync_to_async(ratelimits.hit, thread_sensitive=False)("auth-failures", self.ip_bucket)
            return await self.close_with(Close.UNAUTHORIZED, "unauthorized")
        except UNAVAILABLE_ERRORS:
            metrics.websocket_authentication(unavailable=True)
            logger.warning("websocket auth failed: a dependency is unavailable")
            return await self.close_with(Close.UNAVAILABLE, "unavailable")
        metrics.websocket_authentication()
        self.credential, self.user = credential, credential.user
        remaining = (credential.expires_at - timezone.now()).total_seconds()
        self.later(max(remaining, 0), self.credential_expired)
        await self.send_json(
            {"type": "hello", "user": user_dict(self.user), "connection_id": self.connection_id}
        )
        # TEMPORARY (issue 15), until live.hub does it: the registry and the gauge of live sockets.
        presence.opened(
            presence.LiveSocket(
                self.connection_id,
                credential.id,
                self.user.pk,
                presence.PROCESS,
                client_ip.from_scope(self.scope),
                timezone.now(),
            )
        )
        metrics.socket_opened()

    async def dispatch(self, message):
        # Channels hops to a thread to close stale database connections before every event,
        # which is one hop per delivered message on the fan-out path. Every ORM call in this
        # consumer goes through database_sync_to_async, which closes stale connections itself.
        handler = getattr(self, get_handler_name(message), None)
        if handler is None:
            raise ValueError(f"No handler for message type {message['type']}")
        await handler(message)

    async def disconnect(self, code):
        self.closed = True
        if getattr(self, "user", None) is not None:  # TEMPORARY (issue 15): see authenticate
            presence.closed(self.connection_id)
            metrics.socket_closed()
        for timer in self.timers:
            timer.cancel()
        for group in self.groups_joined:
            # A failure here is harmless: the layer expires stale group members on its own.
            with contextlib.suppress(Exception):
                await self.channel_layer.group_discard(group, self.channel_name)

    # --- client frames --------------------------------------------------------------------

    async def receive(self, text_data=None, bytes_data=None):
        size = len(text_data.encode("utf-8")) if text_data is not None else len(bytes_data or b"")
        if size > MAX_FRAME:
            return await self.close_with(Close.TOO_BIG, "too_big")
        if self.limiter and not self.limiter.allow():
            if self.limiter.should_close:
                return await self.close_with(Close.RATE_LIMITED, "rate_limited")
            return await self.send_error("rate_limited", "Too many frames; slow down.")
        ref = None
        try:
            frame = self.parse(text_data)
            ref = frame.get("ref")
            if self.user is None:
                return await self.first_frame(frame)
            handler = {
                "subscribe": self.on_subscribe,
                "unsubscribe": self.on_unsubscribe,
                "send": self.on_send,
                "ping": self.on_ping,
            }.get(frame["type"])
            if handler is None:
                raise FrameError(f"Unknown frame type {frame['type'][:32]!r}.")
            await handler(frame, ref)
        except FrameError as exc:
            await self.send_error(exc.code, exc.detail, ref, **exc.extra)
            if exc.code == "invalid_request":
                await self.count_bad_frame()
        except UNAVAILABLE_ERRORS:
            logger.warning("websocket frame failed: a dependency is unavailable")
            await self.send_error("unavailable", "A service is unavailable; retry later.", ref)

    def parse(self, text_data) -> dict:
        if text_data is None:
            raise FrameError("Binary frames are not supported; send JSON text.")
        try:
            frame = json.loads(text_data)
        except (ValueError, RecursionError):
            raise FrameError("The frame is not valid JSON.") from None
        if not isinstance(frame, dict) or not isinstance(frame.get("type"), str):
            raise FrameError('A frame must be a JSON object with a string "type".')
        ref = frame.get("ref")
        if ref is not None and (not isinstance(ref, str) or len(ref) > MAX_REF):
            frame.pop("ref")
            raise FrameError(f"ref must be a string of at most {MAX_REF} characters.")
        if has_unstorable_text(frame):
            raise FrameError(UNSTORABLE_TEXT)
        return frame

    async def first_frame(self, frame):
        found = ws_credentials.from_auth_frame(frame) if frame["type"] == "auth" else None
        if found is None:
            return await self.close_with(Close.UNAUTHORIZED, "unauthorized")
        await self.authenticate(*found)

    async def on_ping(self, frame, ref):
        await self.send_json(self.with_ref({"type": "pong"}, ref))

    async def on_subscribe(self, frame, ref):
        slug, after = frame.get("room"), frame.get("after")
        if not isinstance(slug, str) or not slug:
            raise FrameError("room must be a room slug.")
        if after is not None and (type(after) is not int or after < 0):
            raise FrameError("after must be a non-negative integer message id.")
        try:
            room = await database_sync_to_async(room_for_member)(self.user, slug)
        except NotAllowed:
            raise FrameError("You are not a member of this room.", "forbidden", room=slug[:64]) from None
        if room.pk not in self.streams and len(self.streams) >= settings.NATIVE_WS_MAX_ROOMS:
            raise FrameError(f"At most {settings.NATIVE_WS_MAX_ROOMS} rooms per connection.")
        # Join first: anything committed after the backlog query then arrives as an event.
        await self.join(room_group(room.pk))
        head, last_visible = await database_sync_to_async(_room_head)(self.user.pk, room.pk)
        if after is not None:
            await self.send_backlog(room.pk, after, head)
        stream = self.streams.get(room.pk)
        if stream is None or stream.next_seq <= head:
            self.streams[room.pk] = RoomStream(room.pk, room.slug, next_seq=head + 1)
        await self.send_json(
            self.with_ref({"type": "subscribed", "room": room.slug, "last_message_id": last_visible}, ref)
        )

    async def send_backlog(self, room_id: int, after: int, head: int):
        """Visible messages with id > after and seq <= head, read and sent a chunk at a time so
        that a resume from long ago costs bounded memory."""
        first = 1
        while first <= head:
            chunk = await database_sync_to_async(seq_range)(
                self.user.pk, room_id, first, head, after_id=after, limit=BACKLOG_CHUNK
            )
            for _, message in chunk:
                await self.send_json({"type": "message", "message": message})
            # Let the server flush to the socket between chunks: under daphne a long backlog
            # would otherwise pile up unsent and look like a slow consumer (daphne_compat.py).
            await asyncio.sleep(0)
            if len(chunk) < BACKLOG_CHUNK:
                return
            first = chunk[-1][0] + 1

    async def on_unsubscribe(self, frame, ref):
        slug = frame.get("room")
        if not isinstance(slug, str) or not slug:
            raise FrameError("room must be a room slug.")
        for room_id, stream in list(self.streams.items()):
            if stream.slug == slug:
                await self.leave_room(room_id)
        await self.send_json(
            self.with_ref({"type": "unsubscribed", "room": slug[:64], "reason": "client"}, ref)
        )

    async def on_send(self, frame, ref):
        slug = frame.get("room")
        if not isinstance(slug, str) or not slug:
            raise FrameError("room must be a room slug.")
        try:
            posted = await database_sync_to_async(post_message)(
                self.user, slug, frame.get("body"), frame.get("client_id"), frame.get("target_user_ids")
            )
        except NotAllowed:
            raise FrameError("You are not a member of this room.", "forbidden", room=slug[:64]) from None
        except InvalidMessage as exc:
            raise FrameError(str(exc)) from None
        ack = {"type": "ack", "id": posted.message["id"], "client_id": posted.message["client_id"]}
        await self.send_json(self.with_ref(ack, ref))

    # --- channel-layer events ---------------------------------------------------------------

    async def room_message(self, event):
        stream = self.streams.get(event["room_id"])
        if stream is None:
            return
        message = event["message"]
        visible = may_see_event(self.user.pk, message["sender"]["id"], message["target_user_ids"])
        if not stream.offer(event["seq"], message if visible else None):
            return
        gap = stream.missing()
        if gap is not None:
            fetched = await database_sync_to_async(seq_range)(self.user.pk, stream.room_id, *gap)
            stream.fill(fetched, gap[1])
        for ready in stream.ready():
            await self.send_json({"type": "message", "message": ready})

    async def membership_revoked(self, event):
        stream = self.streams.get(event["room_id"])
        if stream is None:
            return
        await self.leave_room(stream.room_id)
        await self.send_json({"type": "unsubscribed", "room": stream.slug, "reason": "membership_revoked"})

    async def credential_revoked(self, event):
        await self.close_with(Close.UNAUTHORIZED, "revoked")

    # --- helpers ----------------------------------------------------------------------------

    async def join(self, group: str):
        await self.channel_layer.group_add(group, self.channel_name)
        self.groups_joined.add(group)

    async def leave_room(self, room_id: int):
        self.streams.pop(room_id, None)
        group = room_group(room_id)
        self.groups_joined.discard(group)
        await self.channel_layer.group_discard(group, self.channel_name)

    def later(self, delay: float, callback):
        loop = asyncio.get_running_loop()
        self.timers.append(loop.call_later(delay, lambda: asyncio.ensure_future(callback())))

    async def auth_timed_out(self):
        if self.user is None and not self.closed:
            await self.close_with(Close.AUTH_TIMEOUT, "auth_timeout")

    async def credential_expired(self):
        if not self.closed:
            await self.close_with(Close.UNAUTHORIZED, "expired")

    async def count_bad_frame(self):
        now = time.monotonic()
        self.bad_frames.append(now)
        while self.bad_frames and now - self.bad_frames[0] > BAD_FRAME_WINDOW:
            self.bad_frames.popleft()
        if len(self.bad_frames) >= settings.NATIVE_WS_MAX_BAD_FRAMES:
            await self.close_with(Close.PROTOCOL, "protocol_violation")

    async def close_with(self, code: int, reason: str):
        if self.closed:
            return
        self.closed = True
        await self.close(code=code, reason=reason)

    @staticmethod
    def with_ref(frame: dict, ref) -> dict:
        if ref is not None:
            frame["ref"] = ref
        return frame

    async def send_error(self, code: str, detail: str, ref=None, **extra):
        await self.send_json(self.with_ref({"type": "error", "code": code, "detail": detail, **extra}, ref))

    async def send_json(self, frame: dict):
        if not self.closed:
            await self.send(text_data=json.dumps(frame, separators=(",", ":")))
