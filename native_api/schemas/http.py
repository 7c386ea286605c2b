"""The REST shapes of API.md: request bodies, query parameters and response bodies.

Requests ignore fields they do not declare (clients may be newer than the server); responses
forbid them, so the documents say ``additionalProperties: false`` and the tests that validate
real responses catch a stray field.
"""

from typing import Annotated, Literal

import msgspec
from msgspec import Meta

from native_api.schemas.fields import (
    MAX_DEVICE_NAME,
    Body,
    ClientId,
    Cursor,
    Id,
    MessageId,
    RoomSlug,
    TargetUserIds,
    Timestamp,
)

MAX_KEY_TEXT = 16 * 1024  # an SSH public key line or an armoured signature


class Request(msgspec.Struct):
    """A request body or query: unknown fields are ignored."""


class Response(msgspec.Struct, forbid_unknown_fields=True):
    """A response body: exactly the declared fields, every one always present (null if empty)."""


ErrorCode = Literal[
    "invalid_request",
    "unauthorized",
    "forbidden",
    "not_found",
    "method_not_allowed",
    "payload_too_large",
    "rate_limited",
    "unavailable",
    "internal_error",
]


class Error(Response):
    """Every error answer: a code from API.md's table and one human sentence."""

    error: ErrorCode
    detail: str


class User(Response):
    id: Id
    username: str


# --- health and login ---------------------------------------------------------------------------

Part = Literal["ok", "down"]


class Health(Response):
    status: Part
    database: Part
    channel_layer: Part
    cache: Part


class Challenge(Response):
    nonce: str
    namespace: Annotated[str, Meta(description="Sign with `ssh-keygen -Y sign -n NAMESPACE`.")]
    expires_in: Annotated[int, Meta(ge=1, description="Seconds until the nonce dies.")]


class LoginRequest(Request):
    public_key: Annotated[
        str,
        Meta(
            min_length=1,
            max_length=MAX_KEY_TEXT,
            description="An OpenSSH public key line, or a user certificate line (KEY-cert.pub).",
        ),
    ]
    nonce: Annotated[str, Meta(min_length=1, description="The nonce of GET challenge; single use.")]
    signature: Annotated[
        str,
        Meta(
            min_length=1,
            max_length=MAX_KEY_TEXT,
            description="The armoured SSHSIG of the nonce's UTF-8 bytes in the challenge's namespace.",
        ),
    ]
    public_key_fingerprint: (
        Annotated[
            str,
            Meta(
                max_length=100, description="If given, must match the key, or the certified key (SHA256:…)."
            ),
        ]
        | None
    ) = None
    device_name: Annotated[str, Meta(max_length=MAX_DEVICE_NAME)] | None = None


class IssuedToken(Response):
    token: Annotated[str, Meta(description="The bearer token (nat_…); shown once, never again.")]
    token_id: str
    expires_at: Timestamp
    user: User


# --- the caller and their tokens ------------------------------------------------------------------


class TokenInfo(Response):
    """One credential, native or service: the same fields for both, null where one does not apply."""

    id: Annotated[str, Meta(description="A native token's id, or a service token's jti.")]
    kind: Literal["native", "service"]
    device_name: Annotated[
        str, Meta(description="The login's device_name, or a service token's --name; empty if none.")
    ]
    user_agent: Annotated[str | None, Meta(description="Native tokens: the User-Agent of the login.")]
    created_ip: Annotated[
        str | None,
        Meta(description="Native tokens: the login's address (cleared after the retention period)."),
    ]
    created_at: Annotated[
        Timestamp | None, Meta(description="When it was issued; null for a service token minted before iat.")
    ]
    last_used_at: Annotated[
        Timestamp | None, Meta(description="Native tokens, updated at most once a minute; null until used.")
    ]
    expires_at: Timestamp
    current: Annotated[bool, Meta(description="True for the credential this request was made with.")]
    live_sockets: Annotated[
        int, Meta(ge=0, description="Websockets open with this credential right now, in every process.")
    ]


class Me(Response):
    user: User
    token: TokenInfo


class TokenList(Response):
    tokens: list[TokenInfo]


class WsTicket(Response):
    ticket: Annotated[str, Meta(description="Single use (wst_…), bound to the minting credential.")]
    expires_in: Annotated[int, Meta(ge=1, description="Seconds until the ticket dies.")]
    url: Annotated[str, Meta(description="The websocket path with the ticket: /api/ws/native?ticket=…")]


# --- rooms and messages -------------------------------------------------------------------------------


class Message(Response):
    id: MessageId
    room: RoomSlug
    sender: User
    body: Body
    created_at: Timestamp
    client_id: ClientId | None
    target_user_ids: Annotated[
        list[Id], Meta(description="Empty for a message every member sees; sorted ascending.")
    ]


class RoomSummary(Response):
    slug: RoomSlug
    name: str
    last_message_id: Annotated[
        MessageId | None, Meta(description="The newest message the caller may see; null when none.")
    ]


class RoomList(Response):
    rooms: list[RoomSummary]


class HistoryQuery(Request):
    limit: Annotated[int, Meta(ge=1, le=200, description="How many messages at most.")] = 50
    before: Annotated[Cursor, Meta(description="Only messages older than this id.")] | None = None
    after: (
        Annotated[Cursor, Meta(description="Only messages newer than this id, oldest first (resume).")] | None
    ) = None


class History(Response):
    room: RoomSlug
    # The dicts of rooms.serializers.message_dict encode exactly like Message structs.
    messages: Annotated[list[Message], Meta(description="In ascending id order.")]
    has_more: Annotated[
        bool, Meta(description="With after: newer messages exist; otherwise: older ones exist.")
    ]


class PostMessage(Request):
    body: Body
    client_id: ClientId | None = None
    target_user_ids: TargetUserIds | None = None


class Members(Response):
    room: RoomSlug
    members: Annotated[list[User], Meta(description="Every member of the room, ordered by username.")]
