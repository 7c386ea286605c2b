"""The websocket frame declarations: decoding client frames, encoding server frames.

native_api.consumer switches to these when the lead merges; until then these tests hold them to
the words and shapes the consumer uses today (tests/test_consumer_rooms.py) and to API.md.
"""

import json

import pytest
from hypothesis import given
from hypothesis import strategies as st

from native_api.schemas import fields
from native_api.schemas.frames import (
    CLOSE_REASONS,
    AckFrame,
    AuthFrame,
    CloseCode,
    InvalidFrame,
    MessageFrame,
    PingFrame,
    PongFrame,
    SendFrame,
    SubscribedFrame,
    SubscribeFrame,
    UnsubscribedFrame,
    UnsubscribeFrame,
    decode_client_frame,
    encode_frame,
    encode_message_frame,
    error,
    hello,
)
from rooms import posting

UNSTORABLE = "Strings must be Unicode text without NUL characters or lone surrogates."
NOT_JSON = "The frame is not valid JSON."


def refused(text):
    with pytest.raises(InvalidFrame) as caught:
        decode_client_frame(text)
    return caught.value


@pytest.mark.parametrize(
    "text, frame",
    [
        ('{"type": "ping"}', PingFrame()),
        ('{"type": "ping", "ref": "r1"}', PingFrame(ref="r1")),
        ('{"type": "auth", "ticket": "wst_x", "ref": "a"}', AuthFrame(ticket="wst_x", ref="a")),
        ('{"type": "subscribe", "room": "general", "after": 0}', SubscribeFrame(room="general", after=0)),
        ('{"type": "unsubscribe", "room": "general"}', UnsubscribeFrame(room="general")),
        (
            '{"type": "send", "room": "general", "body": "hi", "client_id": "c", "target_user_ids": [2, 3]}',
            SendFrame(room="general", body="hi", client_id="c", target_user_ids=[2, 3]),
        ),
        ('{"type": "ping", "extra": {"ignored": true}}', PingFrame()),
    ],
)
def test_a_valid_frame_decodes_to_its_struct(text, frame):
    assert decode_client_frame(text) == frame


@pytest.mark.parametrize(
    "text, detail",
    [
        ("not json", "The frame is not valid JSON."),
        ('{"type": "ping"} trailing', "The frame is not valid JSON."),
        ("[1, 2]", 'A frame must be a JSON object with a string "type".'),
        ('{"type": 5}', 'A frame must be a JSON object with a string "type".'),
        ('{"room": "general"}', 'A frame must be a JSON object with a string "type".'),
        ('{"type": "dance"}', "Unknown frame type 'dance'."),
        ('{"type": "hello"}', "Unknown frame type 'hello'."),
        ('{"type": "' + "x" * 100 + '"}', "Unknown frame type '" + "x" * 32 + "'."),
        ('{"type": "subscribe"}', "room is required (a room slug)."),
        ('{"type": "subscribe", "room": 7}', "room must be a room slug."),
        ('{"type": "subscribe", "room": ""}', "room must be a room slug."),
        (
            '{"type": "subscribe", "room": "g", "after": "x"}',
            "after must be a non-negative integer message id.",
        ),
        (
            '{"type": "subscribe", "room": "g", "after": -1}',
            "after must be a non-negative integer message id.",
        ),
        (
            '{"type": "subscribe", "room": "g", "after": 1e3}',
            "after must be a non-negative integer message id.",
        ),
        (
            '{"type": "subscribe", "room": "g", "after": 9223372036854775808}',
            "after must be a non-negative integer message id.",
        ),
        ('{"type": "send", "room": "g", "body": ""}', "body must be a string of 1 to 4000 characters."),
        ('{"type": "send", "room": "g", "body": 5}', "body must be a string of 1 to 4000 characters."),
        (
            '{"type": "send", "room": "g", "body": "' + "x" * 4001 + '"}',
            "body must be a string of 1 to 4000 characters.",
        ),
        (
            '{"type": "send", "room": "g", "body": "x", "client_id": 5}',
            "client_id must be a string of 1 to 64 characters.",
        ),
        (
            '{"type": "send", "room": "g", "body": "x", "target_user_ids": "all"}',
            "target_user_ids must be a list of at most 100 positive integer user ids.",
        ),
        (
            '{"type": "send", "room": "g", "body": "x", "target_user_ids": [true]}',
            "target_user_ids must be a list of at most 100 positive integer user ids.",
        ),
        ('{"type": "auth", "ticket": 5}', "ticket must be a string."),
        ('{"type": "ping", "ref": 5}', "ref must be a string of at most 64 characters."),
        ('{"type": "ping", "ref": "' + "r" * 65 + '"}', "ref must be a string of at most 64 characters."),
        ('{"type": "send", "room": "g", "body": "a\\u0000b"}', UNSTORABLE),
        ('{"type": "send", "room": "g", "body": "\\ud800"}', UNSTORABLE),
        ('{"type": "ping", "x": "\\udfff"}', UNSTORABLE),
        ('{"type": "ping", "ref": [1], "x": "\\ud800"}', UNSTORABLE),
        ('{"type": "send", "room": 5, "x": ' + "[" * 30_000 + "]" * 30_000 + "}", NOT_JSON),
        ('{"type": "ping", "x": ' + "[" * 30_000 + "]" * 30_000 + "}", "The frame is not valid JSON."),
        ('{"type": "ping", "x": NaN}', "The frame is not valid JSON."),
        (None, "Binary frames are not supported; send JSON text."),
    ],
)
def test_a_bad_frame_is_refused_with_one_sentence(text, detail):
    assert refused(text).detail == detail


def test_the_refusal_carries_a_valid_ref_so_the_error_frame_can_echo_it():
    assert refused('{"type": "send", "room": "g", "body": "", "ref": "r9"}').ref == "r9"
    assert refused('{"type": "dance", "ref": "r9"}').ref == "r9"
    assert refused('{"type": "send", "room": "g", "body": "\\u0000", "ref": "r9"}').ref == "r9"
    assert refused('{"type": "ping", "ref": ["not", "a", "string"]}').ref is None
    assert refused("not json").ref is None


@pytest.mark.parametrize(
    "text, frame_type",
    [
        ('{"type": "auth", "ticket": 5}', "auth"),
        ('{"type": "dance"}', "dance"),
        ('{"type": "send", "room": "g", "body": "\\u0000"}', "send"),
        ('{"type": "auth", "ref": 5}', None),
        ("[]", None),
        ("nope", None),
    ],
)
def test_the_refusal_says_which_type_of_frame_it_was_when_it_was_an_object(text, frame_type):
    assert refused(text).frame_type == frame_type


def test_the_auth_frame_names_its_credential_ticket_first():
    assert decode_client_frame('{"type": "auth", "ticket": "t", "token": "k"}').credential() == (
        "ticket",
        "t",
    )
    assert decode_client_frame('{"type": "auth", "token": "k"}').credential() == ("bearer", "k")
    assert decode_client_frame('{"type": "auth"}').credential() is None


def test_the_declared_limits_are_the_ones_posting_enforces():
    assert (fields.MAX_BODY, fields.MAX_CLIENT_ID, fields.MAX_TARGETS) == (
        posting.MAX_BODY,
        posting.MAX_CLIENT_ID,
        posting.MAX_TARGETS,
    )


def _posting_accepts(body, client_id, targets) -> bool:
    try:
        posting.validate(body, client_id, targets)
    except posting.InvalidMessage:
        return False
    return True


_value = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(min_value=-(2**64), max_value=2**64),
    st.text(max_size=5),
    st.sampled_from(["x" * 4000, "x" * 4001, "c" * 64, "c" * 65]),
    st.lists(st.integers(min_value=-1, max_value=2**63), max_size=3),
    st.just(list(range(1, 102))),
    st.lists(st.booleans(), max_size=2),
)


@given(body=_value, client_id=_value, targets=_value)
def test_the_send_frame_accepts_exactly_what_posting_accepts(body, client_id, targets):
    frame = {
        "type": "send",
        "room": "general",
        "body": body,
        "client_id": client_id,
        "target_user_ids": targets,
    }
    text = json.dumps(frame)
    try:
        decode_client_frame(text)
        decoded = True
    except InvalidFrame:
        decoded = False
    storable = not any(isinstance(v, str) and "\x00" in v for v in (body, client_id))
    assert decoded == (_posting_accepts(body, client_id, targets) and storable)


def test_server_frames_encode_as_api_md_shows_them():
    user = {"id": 1, "username": "alice"}
    encoded = [
        json.loads(encode_frame(frame))
        for frame in (
            hello(user, "c1"),
            hello(user, "c1", ref="auth-1"),
            SubscribedFrame(room="general", last_message_id=None),
            UnsubscribedFrame(room="general", reason="membership_revoked"),
            AckFrame(id=7, client_id=None, ref="s1"),
            PongFrame(),
            error("forbidden", "You are not a member of this room.", room="general"),
            error("invalid_request", "body must be a string of 1 to 4000 characters.", ref="s2"),
        )
    ]
    assert encoded == [
        {"type": "hello", "user": user, "connection_id": "c1"},
        {"type": "hello", "user": user, "connection_id": "c1", "ref": "auth-1"},
        {"type": "subscribed", "room": "general", "last_message_id": None},
        {"type": "unsubscribed", "room": "general", "reason": "membership_revoked"},
        {"type": "ack", "id": 7, "client_id": None, "ref": "s1"},
        {"type": "pong"},
        {
            "type": "error",
            "code": "forbidden",
            "detail": "You are not a member of this room.",
            "room": "general",
        },
        {
            "type": "error",
            "code": "invalid_request",
            "detail": "body must be a string of 1 to 4000 characters.",
            "ref": "s2",
        },
    ]


def test_a_message_frame_encodes_a_fan_out_events_message_dict_unchanged():
    message = {
        "id": 5,
        "room": "general",
        "sender": {"id": 1, "username": "alice"},
        "body": "hi \u202e \U0001f600",
        "created_at": "2026-11-22T18:42:31.120Z",
        "client_id": None,
        "target_user_ids": [],
    }
    assert json.loads(encode_message_frame(message)) == {"type": "message", "message": message}
    assert encode_message_frame(message) == encode_frame(MessageFrame(message=message))


def test_every_close_code_of_api_md_is_declared_with_its_reason_words():
    assert {int(code) for code in CloseCode} == {4400, 4401, 4403, 4408, 4429, 1009, 1012, 1013}
    assert CLOSE_REASONS[CloseCode.UNAUTHORIZED] == ("unauthorized", "revoked", "expired")
    assert CLOSE_REASONS[CloseCode.RESTART] == ("restart",)
    assert set(CLOSE_REASONS) == set(CloseCode)
