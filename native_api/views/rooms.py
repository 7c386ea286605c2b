"""Rooms, history and posting: thin wrappers over rooms.visibility and rooms.posting."""

from django.http import JsonResponse
from django.views.decorators.csrf import csrf_exempt
from django.views.decorators.http import require_http_methods

from native_api.auth import bearer_required
from native_api.errors import ApiError
from native_api.requests import int_param, json_object
from rooms.history import page
from rooms.posting import InvalidMessage, post_message
from rooms.visibility import NotAllowed, room_for_member, rooms_with_last_visible_id

FORBIDDEN = "You are not a member of this room, or it does not exist."


@csrf_exempt
@require_http_methods(["GET"])
@bearer_required
def rooms(request):
    listed = rooms_with_last_visible_id(request.user)
    return JsonResponse(
        {"rooms": [{"slug": r.slug, "name": r.name, "last_message_id": r.last_message_id} for r in listed]}
    )


@csrf_exempt
@require_http_methods(["GET"])
@bearer_required
def history(request, slug):
    limit = int_param(request, "limit", default=50, minimum=1, maximum=200)
    before = int_param(request, "before")
    after = int_param(request, "after")
    try:
        room = room_for_member(request.user, slug)
    except NotAllowed:
        raise ApiError(403, FORBIDDEN) from None
    messages, has_more = page(request.user, room, limit=limit, before=before, after=after)
    return JsonResponse({"room": room.slug, "messages": messages, "has_more": has_more})


@csrf_exempt
@require_http_methods(["POST"])
@bearer_required
def messages(request, slug):
    data = json_object(request)
    try:
        posted = post_message(
            request.user, slug, data.get("body"), data.get("client_id"), data.get("target_user_ids")
        )
    except NotAllowed:
        raise ApiError(403, FORBIDDEN) from None
    except InvalidMessage as exc:
        raise ApiError(400, str(exc)) from None
    return JsonResponse(posted.message, status=201 if posted.created else 200)
