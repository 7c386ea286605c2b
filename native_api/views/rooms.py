"""Rooms, history, members and posting: thin wrappers over rooms.visibility and rooms.posting."""

from django.contrib.auth import get_user_model

from native_api.endpoints import Operation, endpoint, json_response, read_body, read_query
from native_api.errors import ApiError, sentence
from native_api.schemas.fields import RoomSlug
from native_api.schemas.http import (
    History,
    HistoryQuery,
    Members,
    Message,
    PostMessage,
    RoomList,
    RoomSummary,
)
from native_api.serializers import user_struct
from rooms.history import page
from rooms.posting import InvalidMessage, post_message
from rooms.visibility import NotAllowed, room_for_member, rooms_with_last_visible_id

FORBIDDEN = "You are not a member of this room, or it does not exist."
# The same 403 for a room that exists and one that does not: no existence oracle.
_NOT_A_MEMBER = {403: "Not a member of the room, or no such room (the same answer)."}


def _member_room(user, slug):
    try:
        return room_for_member(user, slug)
    except NotAllowed:
        raise ApiError(403, FORBIDDEN) from None


@endpoint(
    get=Operation(
        "listRooms",
        "rooms",
        "The rooms the caller is a member of.",
        auth=True,
        responses={200: (RoomList, "With the last message id each room has that the caller may see.")},
    )
)
def rooms(request):
    listed = [
        RoomSummary(slug=r.slug, name=r.name, last_message_id=r.last_message_id)
        for r in rooms_with_last_visible_id(request.user)
    ]
    return json_response(RoomList(rooms=listed))


@endpoint(
    path={"slug": RoomSlug},
    get=Operation(
        "getRoomHistory",
        "rooms",
        "A page of the room's messages the caller may see, in ascending id order.",
        description="Without after: the newest limit messages (older than before, if given); has_more "
        "says whether older ones exist. With after: the oldest limit messages newer than after "
        "(resume); has_more says whether newer ones exist.",
        auth=True,
        query=HistoryQuery,
        responses={200: (History, "A page of visible messages.")},
        errors=_NOT_A_MEMBER,
    ),
)
def history(request, slug):
    query = read_query(request, HistoryQuery)
    room = _member_room(request.user, slug)
    messages, has_more = page(request.user, room, limit=query.limit, before=query.before, after=query.after)
    return json_response(History(room=room.slug, messages=messages, has_more=has_more))


@endpoint(
    path={"slug": RoomSlug},
    get=Operation(
        "listRoomMembers",
        "rooms",
        "The members of a room the caller belongs to, ordered by username.",
        auth=True,
        responses={200: (Members, "Every member, the caller included.")},
        errors=_NOT_A_MEMBER,
    ),
)
def members(request, slug):
    room = _member_room(request.user, slug)
    users = get_user_model().objects.filter(memberships__room=room).order_by("username", "pk")
    return json_response(Members(room=room.slug, members=[user_struct(u) for u in users]))


@endpoint(
    path={"slug": RoomSlug},
    post=Operation(
        "postMessage",
        "rooms",
        "Post a message; idempotent on client_id.",
        auth=True,
        body=PostMessage,
        responses={
            201: (Message, "Posted."),
            200: (Message, "A repeat of a client_id by the same sender in this room: the original."),
        },
        errors={400: "A target that is not a member of the room.", **_NOT_A_MEMBER},
    ),
)
def messages(request, slug):
    body = read_body(request, PostMessage)
    try:
        # posting validates again (the websocket's send frame shares it); the declaration has
        # already refused anything it would, in the same words.
        posted = post_message(request.user, slug, body.body, body.client_id, body.target_user_ids)
    except NotAllowed:
        raise ApiError(403, FORBIDDEN) from None
    except InvalidMessage as exc:
        raise ApiError(400, sentence(str(exc))) from None
    return json_response(posted.message, status=201 if posted.created else 200)
