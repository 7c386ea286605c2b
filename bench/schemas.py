"""msgspec vs pydantic v2 vs the json module on the hot wire paths (not part of ``python -m bench``).

``python -m bench.schemas [--quick]`` times, in this process, per operation:

- decode + validate a websocket ``send`` frame (str) and a POST messages body (bytes): the json
  module with the hand-written checks the server used before (json.loads, the unstorable-text
  walk, rooms.posting.validate), msgspec through the server's real declarations
  (native_api.schemas), and pydantic v2 models declaring the same limits (strict mode, plus the
  same NUL check);
- encode a Message response body and a ``{"type": "message", "message": …}`` fan-out frame;
- build a Message from its fields (what rooms.serializers.message_dict does per history row).

It prints a table (ns per operation, best of several repeats, and the ratio to the json module)
and one JSON line with every figure. No server, database or network is involved.
"""

import argparse
import json
import os
import platform
import sys
import timeit
from typing import Annotated, Any, Literal

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "config.settings")

import django  # noqa: E402

django.setup()

import msgspec  # noqa: E402
import pydantic  # noqa: E402
from pydantic import BaseModel, ConfigDict, Field, TypeAdapter  # noqa: E402

from native_api.endpoints import decode_json  # noqa: E402
from native_api.schemas import fields  # noqa: E402
from native_api.schemas.decoding import has_unstorable_text  # noqa: E402
from native_api.schemas.frames import decode_client_frame, encode_message_frame  # noqa: E402
from native_api.schemas.http import Message, PostMessage, User  # noqa: E402
from rooms.posting import validate  # noqa: E402

SEND_FRAME = json.dumps(
    {
        "type": "send",
        "room": "general",
        "body": "Lunch at noon? The usual place, I'll book a table for six.",
        "client_id": "6f1c2a9e-1111-4222-8333-444455556666",
        "target_user_ids": [2, 3],
        "ref": "s-42",
    }
)
POST_BODY = json.dumps(
    {
        "body": "Lunch at noon? The usual place, I'll book a table for six.",
        "client_id": "6f1c2a9e-1111-4222-8333-444455556666",
    }
).encode()
MESSAGE = {
    "id": 123456,
    "room": "general",
    "sender": {"id": 7, "username": "alice"},
    "body": "Lunch at noon? The usual place, I'll book a table for six.",
    "created_at": "2026-11-22T18:42:31.120Z",
    "client_id": "6f1c2a9e-1111-4222-8333-444455556666",
    "target_user_ids": [],
}


# --- the json module with hand-written checks: the server's code before native_api.schemas ------


def json_send_frame(text: str):
    frame = json.loads(text)
    if not isinstance(frame, dict) or not isinstance(frame.get("type"), str):
        raise ValueError("not an object")
    ref = frame.get("ref")
    if ref is not None and (not isinstance(ref, str) or len(ref) > fields.MAX_REF):
        raise ValueError("ref")
    if has_unstorable_text(frame):
        raise ValueError("unstorable")
    room = frame.get("room")
    if not isinstance(room, str) or not room:
        raise ValueError("room")
    validate(frame.get("body"), frame.get("client_id"), frame.get("target_user_ids"))
    return frame


def json_post_body(raw: bytes):
    data = json.loads(raw)
    if not isinstance(data, dict):
        raise ValueError("not an object")
    if has_unstorable_text(data):
        raise ValueError("unstorable")
    validate(data.get("body"), data.get("client_id"), data.get("target_user_ids"))
    return data


# --- pydantic v2 models declaring the same shapes --------------------------------------------------

_Id = Annotated[int, Field(ge=1, le=fields.MAX_ID)]
_Body = Annotated[str, Field(min_length=1, max_length=fields.MAX_BODY)]
_ClientId = Annotated[str, Field(min_length=1, max_length=fields.MAX_CLIENT_ID)]
_Targets = Annotated[list[_Id], Field(max_length=fields.MAX_TARGETS)]
_Ref = Annotated[str, Field(max_length=fields.MAX_REF)]


class _Strict(BaseModel):
    model_config = ConfigDict(strict=True)


class PSend(_Strict):
    type: Literal["send"]
    room: Annotated[str, Field(min_length=1)]
    body: _Body
    client_id: _ClientId | None = None
    target_user_ids: _Targets | None = None
    ref: _Ref | None = None


class PPing(_Strict):
    type: Literal["ping"]
    ref: _Ref | None = None


class PSubscribe(_Strict):
    type: Literal["subscribe"]
    room: Annotated[str, Field(min_length=1)]
    after: Annotated[int, Field(ge=0, le=fields.MAX_ID)] | None = None
    ref: _Ref | None = None


PClientFrame = TypeAdapter(Annotated[PSend | PPing | PSubscribe, Field(discriminator="type")])


class PPostMessage(_Strict):
    body: _Body
    client_id: _ClientId | None = None
    target_user_ids: _Targets | None = None


class PUser(_Strict):
    id: _Id
    username: str


class PMessage(_Strict):
    id: _Id
    room: str
    sender: PUser
    body: _Body
    created_at: str
    client_id: _ClientId | None
    target_user_ids: list[_Id]


class PMessageFrame(_Strict):
    type: Literal["message"] = "message"
    message: PMessage


_untyped = TypeAdapter(dict[str, Any])


def _nul_free(*texts):
    if any(t is not None and "\x00" in t for t in texts):
        raise ValueError("unstorable")


def pydantic_send_frame(text: str):
    frame = PClientFrame.validate_json(text)
    _nul_free(frame.room, frame.body, frame.client_id, frame.ref)
    return frame


def pydantic_post_body(raw: bytes):
    body = PPostMessage.model_validate_json(raw)
    _nul_free(body.body, body.client_id)
    return body


# --- the cases ----------------------------------------------------------------------------------------

_msgspec_message = msgspec.convert(MESSAGE, Message)
_pydantic_message = PMessage.model_validate(MESSAGE)
_encode = msgspec.json.Encoder().encode


def _msgspec_build():
    return msgspec.to_builtins(
        Message(
            id=123456,
            room="general",
            sender=User(id=7, username="alice"),
            body=MESSAGE["body"],
            created_at=MESSAGE["created_at"],
            client_id=MESSAGE["client_id"],
            target_user_ids=[],
        )
    )


def _pydantic_build():
    return PMessage(
        id=123456,
        room="general",
        sender=PUser(id=7, username="alice"),
        body=MESSAGE["body"],
        created_at=MESSAGE["created_at"],
        client_id=MESSAGE["client_id"],
        target_user_ids=[],
    ).model_dump()


def _literal_build():
    return {
        "id": 123456,
        "room": "general",
        "sender": {"id": 7, "username": "alice"},
        "body": MESSAGE["body"],
        "created_at": MESSAGE["created_at"],
        "client_id": MESSAGE["client_id"],
        "target_user_ids": [],
    }


CASES = {
    "decode send frame": {
        "json": lambda: json_send_frame(SEND_FRAME),
        "msgspec": lambda: decode_client_frame(SEND_FRAME),
        "pydantic": lambda: pydantic_send_frame(SEND_FRAME),
    },
    "decode POST messages body": {
        "json": lambda: json_post_body(POST_BODY),
        "msgspec": lambda: decode_json(POST_BODY, PostMessage),
        "pydantic": lambda: pydantic_post_body(POST_BODY),
    },
    "encode Message body": {
        "json": lambda: json.dumps(MESSAGE).encode(),
        "msgspec": lambda: _encode(_msgspec_message),
        "pydantic": lambda: _pydantic_message.model_dump_json(),
    },
    "encode message frame (event dict)": {
        "json": lambda: json.dumps({"type": "message", "message": MESSAGE}, separators=(",", ":")),
        "msgspec": lambda: encode_message_frame(MESSAGE),
        "pydantic": lambda: _untyped.dump_json({"type": "message", "message": MESSAGE}).decode(),
    },
    "encode message frame (typed)": {
        "json": lambda: json.dumps({"type": "message", "message": MESSAGE}, separators=(",", ":")),
        "msgspec": lambda: _encode({"type": "message", "message": _msgspec_message}).decode(),
        "pydantic": lambda: PMessageFrame(message=_pydantic_message).model_dump_json(),
    },
    "build Message dict": {
        "json": _literal_build,
        "msgspec": _msgspec_build,
        "pydantic": _pydantic_build,
    },
}


def check_equivalence():
    """The three contenders must agree before their speed means anything."""
    assert json_send_frame(SEND_FRAME)["body"] == decode_client_frame(SEND_FRAME).body
    assert pydantic_send_frame(SEND_FRAME).body == decode_client_frame(SEND_FRAME).body
    assert json_post_body(POST_BODY)["client_id"] == decode_json(POST_BODY, PostMessage).client_id
    assert pydantic_post_body(POST_BODY).client_id == decode_json(POST_BODY, PostMessage).client_id
    for name in ("encode Message body", "encode message frame (event dict)", "encode message frame (typed)"):
        outputs = {json.dumps(json.loads(fn())) for fn in CASES[name].values()}
        assert len(outputs) == 1, (name, outputs)
    assert _literal_build() == _msgspec_build() == _pydantic_build()


def measure(fn, number: int, repeat: int) -> float:
    return min(timeit.repeat(fn, number=number, repeat=repeat)) / number * 1e9


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.schemas", description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true", help="fewer iterations (noisier figures)")
    args = parser.parse_args(argv)
    number, repeat = (2_000, 3) if args.quick else (50_000, 7)
    check_equivalence()
    results = {}
    header = ("case", "json ns", "msgspec ns", "pydantic ns", "json/msgspec", "json/pydantic")
    print(f"{header[0]:36} {header[1]:>9} {header[2]:>11} {header[3]:>12} {header[4]:>13} {header[5]:>14}")
    for case, contenders in CASES.items():
        figures = {name: measure(fn, number, repeat) for name, fn in contenders.items()}
        results[case] = {name: round(ns) for name, ns in figures.items()}
        print(
            f"{case:36} {figures['json']:9.0f} {figures['msgspec']:11.0f} {figures['pydantic']:12.0f} "
            f"{figures['json'] / figures['msgspec']:13.2f} {figures['json'] / figures['pydantic']:14.2f}"
        )
    meta = {
        "python": platform.python_version(),
        "msgspec": msgspec.__version__,
        "pydantic": pydantic.VERSION,
        "quick": args.quick,
        "load": os.getloadavg()[0],
    }
    print(json.dumps({"bench": "schemas", "meta": meta, "ns_per_op": results}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
