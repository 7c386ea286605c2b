"""The websocket protocol of API.md, declared once: client frames, server frames, close codes.

``decode_client_frame`` turns a text frame into one of the client frame structs, or raises
``InvalidFrame`` with the one-sentence detail of the ``error`` frame to answer. Server frames are
structs too; ``encode_frame`` makes the text to send (``ref`` and ``room`` are left out when
unset, every other field is always present). native_api.schemas.asyncapi builds the AsyncAPI
document from these same declarations.
"""

from dataclasses import dataclass
from enum import IntEnum
from typing import Annotated, Literal

import msgspec
from msgspec import Meta

from native_api import ws_credentials
from native_api.schemas.decoding import (
    InvalidInput,
    check_storable,
    field_detail,
    text_fields,
    undecodable_detail,
)
from native_api.schemas.fields import MAX_REF, Body, ClientId, Cursor, MessageId, Ref, RoomSlug, TargetUserIds
from native_api.schemas.http import Message, User

BINARY_FRAME = "Binary frames are not supported; send JSON text."
NOT_JSON = "The frame is not valid JSON."
NOT_AN_OBJECT = 'A frame must be a JSON object with a string "type".'
BAD_REF = f"ref must be a string of at most {MAX_REF} characters."

# --- client → server ----------------------------------------------------------------------------


class ClientFrame(msgspec.Struct, tag_field="type", kw_only=True):
    """A frame a client sends; fields it does not declare are ignored."""

    ref: Ref | None = None


class AuthFrame(ClientFrame, tag="auth"):
    """The first frame, when the upgrade carried no credential: a ticket or a token."""

    ticket: Annotated[str, Meta(description="A ticket from createWsTicket.")] | None = None
    token: Annotated[str, Meta(description="A native or service token.")] | None = None

    def credential(self) -> tuple[str, str] | None:
        """(kind, raw) as native_api.ws_credentials names them; the ticket wins over the token."""
        if self.ticket is not None:
            return ws_credentials.TICKET, self.ticket
        if self.token is not None:
            return ws_credentials.BEARER, self.token
        return None


class SubscribeFrame(ClientFrame, tag="subscribe"):
    """Receive a room's messages; with after, first every visible message with a larger id."""

    room: RoomSlug
    after: Cursor | None = None


class UnsubscribeFrame(ClientFrame, tag="unsubscribe"):
    room: RoomSlug


class SendFrame(ClientFrame, tag="send"):
    """Post a message, with the same rules as postMessage."""

    room: RoomSlug
    body: Body
    client_id: ClientId | None = None
    target_user_ids: TargetUserIds | None = None


class PingFrame(ClientFrame, tag="ping"):
    pass


CLIENT_FRAMES = (AuthFrame, SubscribeFrame, UnsubscribeFrame, SendFrame, PingFrame)
_BY_TYPE = {frame.__struct_config__.tag: frame for frame in CLIENT_FRAMES}
_TEXT_FIELDS = {frame: text_fields(frame) for frame in CLIENT_FRAMES}
_decoder = msgspec.json.Decoder(AuthFrame | SubscribeFrame | UnsubscribeFrame | SendFrame | PingFrame)


class InvalidFrame(InvalidInput):
    """A client frame the contract does not allow: answer ``error`` invalid_request with ``detail``
    (echoing ``ref`` when the frame carried a valid one) and count it as a bad frame.

    ``frame_type`` is the frame's ``type`` when it was a JSON object with a string type and a
    valid ref (else None): before authentication such a frame, if not a valid auth frame, closes
    the socket 4401 instead of being answered."""

    def __init__(self, detail: str, ref: str | None = None, frame_type: str | None = None):
        super().__init__(detail)
        self.ref = ref
        self.frame_type = frame_type


class _Envelope(msgspec.Struct):
    type: object = None
    ref: object = None


def decode_client_frame(text: str | None) -> ClientFrame:
    """A text frame (``None``: a binary one) as its struct, or InvalidFrame."""
    if text is None:
        raise InvalidFrame(BINARY_FRAME)
    try:
        frame = _decoder.decode(text)
    except msgspec.ValidationError as exc:
        raise _explain(text, exc) from None
    except (msgspec.DecodeError, ValueError, RecursionError):
        raise InvalidFrame(undecodable_detail(text, NOT_JSON)) from None
    try:
        check_storable(text, frame, _TEXT_FIELDS[type(frame)])
    except InvalidInput as exc:
        raise InvalidFrame(exc.detail, frame.ref, frame.__struct_config__.tag) from None
    return frame


def _explain(text: str, error: msgspec.ValidationError) -> InvalidFrame:
    """Word a refusal, in the order a reader checks: an object with a string type, a valid ref,
    a known type, then that type's fields. Only refused frames take this path."""
    try:
        envelope = msgspec.json.decode(text, type=_Envelope)
    except msgspec.ValidationError:
        return InvalidFrame(NOT_AN_OBJECT)
    except (msgspec.DecodeError, ValueError, RecursionError):
        # The first refusal came before the text turned out not to be JSON msgspec reads (a
        # lone surrogate further on, nesting past the limit): say that instead.
        return InvalidFrame(undecodable_detail(text, NOT_JSON))
    kind, ref = envelope.type, envelope.ref
    if not isinstance(kind, str):
        return InvalidFrame(NOT_AN_OBJECT)
    if ref is not None and (not isinstance(ref, str) or len(ref) > MAX_REF):
        return InvalidFrame(BAD_REF)
    shape = _BY_TYPE.get(kind)
    if shape is None:
        return InvalidFrame(f"Unknown frame type {kind[:32]!r}.", ref, kind)
    return InvalidFrame(field_detail(error, shape) or NOT_AN_OBJECT, ref, kind)


# --- server → client ----------------------------------------------------------------------------


class ServerFrame(
    msgspec.Struct, tag_field="type", kw_only=True, omit_defaults=True, forbid_unknown_fields=True
):
    """A frame the server sends. Only ``ref`` and ``room`` (errors) are ever left out."""


class HelloFrame(ServerFrame, tag="hello"):
    """Authenticated: the first frame of every session."""

    user: User
    connection_id: Annotated[str, Meta(description="This connection's id (logs, the live registry).")]
    ref: Annotated[Ref, Meta(description="The ref of the auth frame, when it carried one.")] | None = None


class SubscribedFrame(ServerFrame, tag="subscribed"):
    room: RoomSlug
    last_message_id: Annotated[
        MessageId | None,
        Meta(description="The newest message the caller may see as of subscribing; null when none."),
    ]
    ref: Ref | None = None


class UnsubscribedFrame(ServerFrame, tag="unsubscribed"):
    """The reply to unsubscribe (reason client), or the user was removed from the room."""

    room: RoomSlug
    reason: Literal["client", "membership_revoked"]
    ref: Ref | None = None


class AckFrame(ServerFrame, tag="ack"):
    """A send is committed (for a client_id retry: the original's id)."""

    id: MessageId
    client_id: ClientId | None
    ref: Ref | None = None


class PongFrame(ServerFrame, tag="pong"):
    ref: Ref | None = None


class MessageFrame(ServerFrame, tag="message"):
    """A message of a subscribed room that the recipient may see, in id order per room."""

    message: Message


ErrorCode = Literal["invalid_request", "forbidden", "rate_limited", "unavailable"]


class ErrorFrame(ServerFrame, tag="error"):
    code: ErrorCode
    detail: Annotated[str, Meta(description="One human sentence; for invalid_request it names the field.")]
    ref: Ref | None = None
    room: Annotated[RoomSlug, Meta(description="With forbidden: the room that was refused.")] | None = None


SERVER_FRAMES = (
    HelloFrame,
    SubscribedFrame,
    UnsubscribedFrame,
    AckFrame,
    PongFrame,
    MessageFrame,
    ErrorFrame,
)

_encode = msgspec.json.Encoder().encode


def encode_frame(frame: ServerFrame) -> str:
    """The text of a websocket frame (channels' ``send(text_data=…)`` takes str)."""
    return _encode(frame).decode()


def encode_message_frame(message: dict) -> str:
    """``{"type": "message", "message": …}`` for a fan-out event's message, which is the dict form
    of a Message (rooms.serializers.message_dict): encode it once per event, send it to every
    local socket that may see it."""
    return _encode(MessageFrame(message=message)).decode()


class EngineEncoder:
    """The frames the engine (live.hub) writes itself, encoded with these declarations. The
    consumer hands it to the engine, which never imports the wire."""

    message = staticmethod(encode_message_frame)

    @staticmethod
    def unsubscribed(room: str, reason: str) -> str:
        return encode_frame(UnsubscribedFrame(room=room, reason=reason))


# Constructors for the consumer: plain dicts (user_dict, message_dict) in, frames out.


def hello(user: dict, connection_id: str, ref: str | None = None) -> HelloFrame:
    return HelloFrame(user=User(**user), connection_id=connection_id, ref=ref)


def error(code: str, detail: str, ref: str | None = None, room: str | None = None) -> ErrorFrame:
    return ErrorFrame(code=code, detail=detail, ref=ref, room=room)


# --- close codes ------------------------------------------------------------------------------------


class CloseCode(IntEnum):
    PROTOCOL_VIOLATION = 4400
    UNAUTHORIZED = 4401
    FORBIDDEN = 4403
    AUTH_TIMEOUT = 4408
    RATE_LIMITED = 4429
    TOO_BIG = 1009
    RESTART = 1012
    UNAVAILABLE = 1013


@dataclass(frozen=True)
class Close:
    """One close code of API.md, the reason words it is sent with, and what a client should do."""

    code: CloseCode
    reasons: tuple[str, ...]
    meaning: str
    client_should: str


CLOSES = (
    Close(
        CloseCode.PROTOCOL_VIOLATION,
        ("protocol_violation",),
        "Too many bad frames within a minute.",
        "Fix the client.",
    ),
    Close(
        CloseCode.UNAUTHORIZED,
        ("unauthorized", "revoked", "expired"),
        "A bad, expired, replayed or revoked credential at connect; or the socket's credential was "
        "revoked or expired while it was open.",
        "Log in again, or mint a new ticket.",
    ),
    Close(
        CloseCode.FORBIDDEN,
        ("origin", "inactive"),
        "A browser origin that is not allowed, or a disabled account.",
        "Stop.",
    ),
    Close(
        CloseCode.AUTH_TIMEOUT,
        ("auth_timeout",),
        "No credential within the auth timeout.",
        "Reconnect with one.",
    ),
    Close(
        CloseCode.RATE_LIMITED,
        ("rate_limited", "slow_consumer"),
        "Too many connects from the address, a sustained frame flood, or a client that does not read.",
        "Back off.",
    ),
    Close(CloseCode.TOO_BIG, ("too_big",), "A frame over 64 KiB.", "Fix the client."),
    Close(
        CloseCode.RESTART,
        ("restart",),
        "The server is restarting.",
        "Reconnect (another process) and resume with after.",
    ),
    Close(
        CloseCode.UNAVAILABLE,
        ("unavailable",),
        "A dependency (database, channel layer) is unavailable.",
        "Reconnect with back-off.",
    ),
)
CLOSE_REASONS = {close.code: close.reasons for close in CLOSES}
