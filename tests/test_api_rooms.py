"""REST rooms: list, history, posting, targets, idempotency, and the no-existence-oracle rule."""

import pytest

from rooms.membership import add_member
from rooms.posting import post_message
from tests.conftest import auth_header, bearer

pytestmark = pytest.mark.django_db


def post(client, raw, slug, **body):
    return client.post(
        f"/api/native/rooms/{slug}/messages", body, content_type="application/json", **auth_header(raw)
    )


def history(client, raw, slug, query=""):
    return client.get(f"/api/native/rooms/{slug}/history{query}", **auth_header(raw))


@pytest.fixture
def carol(django_user_model, general):
    user = django_user_model.objects.create_user(username="carol")
    add_member(general, user)
    return user


def test_rooms_lists_the_callers_rooms_with_the_last_message_they_may_see(
    client, alice, bob, general, alice_only
):
    public = post_message(alice, "general", "hi").message
    post_message(alice, "general", "secret for alice herself", target_user_ids=[alice.pk])
    rooms = client.get("/api/native/rooms", **auth_header(bearer(bob))).json()["rooms"]
    assert rooms == [{"slug": "general", "name": "General", "last_message_id": public["id"]}]
    alices = client.get("/api/native/rooms", **auth_header(bearer(alice))).json()["rooms"]
    assert {r["slug"] for r in alices} == {"general", "alice-only"}


def test_posting_returns_the_message_in_the_contract_shape(client, alice, general):
    response = post(client, bearer(alice), "general", body="hello", client_id="c1")
    assert response.status_code == 201
    message = response.json()
    assert set(message) == {"id", "room", "sender", "body", "created_at", "client_id", "target_user_ids"}
    assert message["sender"] == {"id": alice.pk, "username": "alice"}
    assert (message["room"], message["body"], message["client_id"], message["target_user_ids"]) == (
        "general",
        "hello",
        "c1",
        [],
    )


def test_a_client_id_retry_returns_200_and_the_original(client, alice, general):
    raw = bearer(alice)
    first = post(client, raw, "general", body="once", client_id="retry-1")
    second = post(client, raw, "general", body="once (retried)", client_id="retry-1")
    assert (first.status_code, second.status_code) == (201, 200)
    assert second.json() == first.json()
    assert general.messages.count() == 1


def test_the_same_client_id_from_another_sender_is_another_message(client, alice, bob, general):
    a = post(client, bearer(alice), "general", body="a", client_id="same")
    b = post(client, bearer(bob), "general", body="b", client_id="same")
    assert a.json()["id"] != b.json()["id"]


@pytest.mark.parametrize("slug", ["general", "no-such-room"])
def test_non_members_get_the_same_403_for_existing_and_unknown_rooms(client, mallory, general, slug):
    raw = bearer(mallory)
    for response in (history(client, raw, slug), post(client, raw, slug, body="x")):
        assert response.status_code == 403
        assert response.json() == {
            "error": "forbidden",
            "detail": "You are not a member of this room, or it does not exist.",
        }


def test_targets_must_be_members_of_the_room(client, alice, mallory, general):
    response = post(client, bearer(alice), "general", body="x", target_user_ids=[mallory.pk])
    assert response.status_code == 400 and "members" in response.json()["detail"]


@pytest.mark.parametrize(
    "body",
    [
        {},
        {"body": ""},
        {"body": "x" * 4001},
        {"body": None},
        {"body": "x", "client_id": "c" * 65},
        {"body": "x", "target_user_ids": [True]},
        {"body": "x", "target_user_ids": ["1"]},
        {"body": "x", "target_user_ids": 3},
    ],
)
def test_bad_message_bodies_get_400(client, alice, general, body):
    response = post(client, bearer(alice), "general", **body)
    assert response.status_code == 400 and response.json()["error"] == "invalid_request"


def test_a_4000_character_body_is_accepted(client, alice, general):
    assert post(client, bearer(alice), "general", body="é" * 4000).status_code == 201


def test_a_targeted_message_is_seen_in_history_only_by_sender_and_targets(client, alice, bob, carol, general):
    secret = post_message(alice, "general", "for bob", target_user_ids=[bob.pk]).message
    visible = {
        user.username: [m["id"] for m in history(client, bearer(user), "general").json()["messages"]]
        for user in (alice, bob, carol)
    }
    assert visible == {"alice": [secret["id"]], "bob": [secret["id"]], "carol": []}
    carol_rooms = client.get("/api/native/rooms", **auth_header(bearer(carol))).json()["rooms"]
    assert carol_rooms[0]["last_message_id"] is None


def test_history_pages_backwards_with_before_and_forwards_with_after(client, alice, general):
    ids = [post_message(alice, "general", f"m{i}").message["id"] for i in range(7)]
    raw = bearer(alice)
    newest = history(client, raw, "general", "?limit=3").json()
    assert [m["id"] for m in newest["messages"]] == ids[4:] and newest["has_more"] is True
    older = history(client, raw, "general", f"?limit=3&before={ids[4]}").json()
    assert [m["id"] for m in older["messages"]] == ids[1:4] and older["has_more"] is True
    oldest = history(client, raw, "general", f"?limit=3&before={ids[1]}").json()
    assert [m["id"] for m in oldest["messages"]] == ids[:1] and oldest["has_more"] is False
    resumed = history(client, raw, "general", f"?limit=5&after={ids[2]}").json()
    assert [m["id"] for m in resumed["messages"]] == ids[3:] and resumed["has_more"] is False
    assert resumed["room"] == "general"


@pytest.mark.parametrize("query", ["?limit=0", "?limit=201", "?limit=x", "?before=-1", "?after=abc"])
def test_bad_history_parameters_get_400(client, alice, general, query):
    assert history(client, bearer(alice), "general", query).status_code == 400


def test_history_uses_a_constant_number_of_queries(
    client, alice, bob, general, django_assert_max_num_queries
):
    for i in range(30):
        post_message(alice, "general", f"m{i}", target_user_ids=[bob.pk] if i % 2 else None)
    raw = bearer(alice)
    history(client, raw, "general")  # warm last_used_at
    with django_assert_max_num_queries(5):
        assert len(history(client, raw, "general", "?limit=200").json()["messages"]) == 30


@pytest.mark.parametrize(
    "body, detail",
    [
        ({}, "body is required (a string of 1 to 4000 characters)."),
        ({"body": ""}, "body must be a string of 1 to 4000 characters."),
        ({"body": "x", "client_id": "c" * 65}, "client_id must be a string of 1 to 64 characters."),
        (
            {"body": "x", "target_user_ids": [0]},
            "target_user_ids must be a list of at most 100 positive integer user ids.",
        ),
        (
            {"body": "x", "target_user_ids": list(range(1, 102))},
            "target_user_ids must be a list of at most 100 positive integer user ids.",
        ),
        ({"body": "a\x00b"}, "Strings must be Unicode text without NUL characters or lone surrogates."),
    ],
)
def test_a_bad_message_field_gets_one_sentence_naming_it(client, alice, general, body, detail):
    response = post(client, bearer(alice), "general", **body)
    assert response.status_code == 400 and response.json() == {"error": "invalid_request", "detail": detail}


def test_a_message_body_not_sent_as_json_is_refused(client, alice, general):
    response = client.post(
        "/api/native/rooms/general/messages",
        '{"body": "hi"}',
        content_type="text/plain",
        **auth_header(bearer(alice)),
    )
    assert response.status_code == 400 and "Content-Type: application/json" in response.json()["detail"]
    assert general.messages.count() == 0


@pytest.mark.parametrize(
    "query, detail",
    [
        ("?limit=0", "limit must be an integer from 1 to 200."),
        ("?limit=x", "limit must be an integer from 1 to 200."),
        ("?before=-1", "before must be a non-negative integer message id."),
        ("?after=1&after=2", "after must be given at most once."),
        ("?after=99999999999999999999", "after must be a non-negative integer message id."),
    ],
)
def test_a_bad_history_parameter_gets_one_sentence_naming_it(client, alice, general, query, detail):
    response = history(client, bearer(alice), "general", query)
    assert response.status_code == 400 and response.json() == {"error": "invalid_request", "detail": detail}


def test_members_lists_the_rooms_members_by_username(client, alice, bob, carol, general):
    response = client.get("/api/native/rooms/general/members", **auth_header(bearer(carol)))
    assert response.status_code == 200
    assert response.json() == {
        "room": "general",
        "members": [
            {"id": alice.pk, "username": "alice"},
            {"id": bob.pk, "username": "bob"},
            {"id": carol.pk, "username": "carol"},
        ],
    }


@pytest.mark.parametrize("slug", ["general", "alice-only", "no-such-room"])
def test_members_of_a_room_the_caller_is_not_in_is_the_same_403_as_history(
    client, mallory, general, alice_only, slug
):
    response = client.get(f"/api/native/rooms/{slug}/members", **auth_header(bearer(mallory)))
    assert response.status_code == 403
    assert response.json() == history(client, bearer(mallory), slug).json()


def test_members_takes_only_get(client, alice, general):
    response = client.post("/api/native/rooms/general/members", **auth_header(bearer(alice)))
    assert response.status_code == 405 and response["Allow"] == "GET"
