"""The AsyncAPI 3.0 document of the websocket protocol, generated from native_api.schemas.frames.

It describes the server: it receives the client frames (each with the replies it answers with)
and sends the unprompted ones (live messages, membership removals). AsyncAPI has no notion of
close codes, so they travel as the ``x-close-codes`` extension of the channel.
"""

import functools

import msgspec

from native_api.schemas import frames

_SCHEMA = "#/components/schemas/{name}"
CHANNEL = "native"
ADDRESS = "/api/ws/native"

# The client frame → what the server answers it with (its direct replies carry the frame's ref).
_REPLIES = {
    frames.AuthFrame: (frames.HelloFrame, frames.ErrorFrame),
    frames.SubscribeFrame: (frames.MessageFrame, frames.SubscribedFrame, frames.ErrorFrame),
    frames.UnsubscribeFrame: (frames.UnsubscribedFrame, frames.ErrorFrame),
    frames.SendFrame: (frames.AckFrame, frames.ErrorFrame),
    frames.PingFrame: (frames.PongFrame, frames.ErrorFrame),
}
_UNPROMPTED = {
    "deliverMessage": (
        frames.MessageFrame,
        "A message of a subscribed room, where the recipient may see it.",
    ),
    "announceRemoval": (
        frames.UnsubscribedFrame,
        "Reason membership_revoked: the user was removed from a subscribed room; delivery has stopped.",
    ),
}

_DESCRIPTION = """\
Credentials, in this order: `?ticket=` (from createWsTicket); `Authorization: Bearer`; `?token=`
(while the server allows it); otherwise the first frame must be `auth` within the auth timeout
(5 s). The server accepts the upgrade, then sends `hello` or closes with one of the codes of
`x-close-codes` (the reason is a short code word, never a secret).

Frames are JSON text objects with a `type`. Any client frame may carry `ref` (a string of at most
64 characters), echoed in its direct reply. Fields a frame does not declare are ignored. A bad
frame is answered with `error` invalid_request, whose detail names the field; repeated bad frames
close the socket with 4400."""


def message_name(shape: type) -> str:
    return shape.__struct_config__.tag


@functools.cache
def _base() -> dict:
    shapes = frames.CLIENT_FRAMES + frames.SERVER_FRAMES
    _, schemas = msgspec.json.schema_components(shapes, ref_template=_SCHEMA)
    channel_ref = {"$ref": f"#/channels/{CHANNEL}"}

    def message_ref(shape):
        return {"$ref": f"#/channels/{CHANNEL}/messages/{message_name(shape)}"}

    operations = {}
    for shape, replies in _REPLIES.items():
        operations[f"receive{shape.__name__.removesuffix('Frame')}"] = {
            "action": "receive",
            "channel": channel_ref,
            "summary": _summary(shape),
            "messages": [message_ref(shape)],
            "reply": {"channel": channel_ref, "messages": [message_ref(reply) for reply in replies]},
        }
    for name, (shape, summary) in _UNPROMPTED.items():
        operations[name] = {
            "action": "send",
            "channel": channel_ref,
            "summary": summary,
            "messages": [message_ref(shape)],
        }
    return {
        "asyncapi": "3.0.0",
        "info": {"title": "Native rooms websocket", "version": "1.0.0", "description": _DESCRIPTION},
        "defaultContentType": "application/json",
        "channels": {
            CHANNEL: {
                "address": ADDRESS,
                "title": "The native websocket",
                "messages": {
                    message_name(shape): {"$ref": f"#/components/messages/{message_name(shape)}"}
                    for shape in shapes
                },
                "bindings": {"ws": _binding()},
                "x-close-codes": [
                    {
                        "code": int(close.code),
                        "reasons": list(close.reasons),
                        "meaning": close.meaning,
                        "clientShould": close.client_should,
                    }
                    for close in frames.CLOSES
                ],
            }
        },
        "operations": operations,
        "components": {
            "messages": {message_name(shape): _message(shape) for shape in shapes},
            "schemas": schemas,
        },
    }


def _message(shape: type) -> dict:
    message = {
        "name": message_name(shape),
        "title": shape.__name__,
        "summary": _summary(shape),
        "payload": {"$ref": _SCHEMA.format(name=shape.__name__)},
    }
    if "ref" in shape.__struct_fields__:
        message["correlationId"] = {
            "description": "The ref a client frame carried comes back in its direct reply.",
            "location": "$message.payload#/ref",
        }
    return message


def _summary(shape: type) -> str:
    doc = (shape.__doc__ or "").strip()
    return doc.splitlines()[0] if doc else f"The {message_name(shape)} frame."


def _binding() -> dict:
    return {
        "method": "GET",
        "query": {
            "type": "object",
            "properties": {
                "ticket": {"type": "string", "description": "A single-use ticket from createWsTicket."},
                "token": {
                    "type": "string",
                    "description": "A bearer token (compatibility; may be disabled).",
                },
            },
        },
        "headers": {
            "type": "object",
            "properties": {"Authorization": {"type": "string", "description": "Bearer <token>"}},
        },
        "bindingVersion": "0.1.0",
    }


def document(host: str | None = None, secure: bool = False) -> dict:
    """The document; with ``host``, a server entry for the host that served it."""
    base = _base()
    if host is None:
        return base
    server = {"host": host, "protocol": "wss" if secure else "ws", "description": "This server."}
    return {**base, "servers": {"this": server}}
