"""The one rule for who may see what.

A user may see a room when they are a member of it. They may see a message of that room when
it is untargeted, or when they sent it, or when they are one of its targets. Every reader
(history, last_message_id, the rooms list, posting, subscribe, resume backlog, live delivery)
goes through the functions below.
"""

from django.db import transaction
from django.db.models import Exists, Max, OuterRef, Q, Subquery

from foundation.compiled_query import CompiledLookup
from rooms.models import Membership, Message, Room, slug_validator

# Posting and subscribing look the room up with its membership on every frame: compiled once
# (foundation.compiled_query). Marks: a slug no room can have, a user id no user has.
_MARKS = ("\x00slug", -(2**62))


def _room_of_member(lock: bool) -> CompiledLookup:
    def build(slug, user_id):
        rooms = Room.objects.filter(slug=slug, memberships__user_id=user_id).order_by()
        return (rooms.select_for_update(of=("self",)) if lock else rooms)[:1]

    return CompiledLookup(build, _MARKS)


_ROOM_OF_MEMBER = {False: _room_of_member(False), True: _room_of_member(True)}


class NotAllowed(Exception):
    """Not a member of the room, or no such room: deliberately the same answer (403)."""


def room_for_member(user, slug: str, *, lock: bool = False) -> Room:
    """The room ``slug`` if ``user`` is a member, else NotAllowed. ``lock``: take the room row's
    lock in the same query (posting assigns the next seq under it)."""
    room = None
    # Only a well-formed slug reaches the database: NUL or a lone surrogate in a query
    # parameter is a driver error (a 5xx), not the 403 that any other unknown room gets.
    if isinstance(slug, str) and slug_validator.regex.fullmatch(slug):
        if lock and transaction.get_autocommit():
            raise transaction.TransactionManagementError("a room lock outside a transaction")
        room = _ROOM_OF_MEMBER[lock].first(slug, user.pk)
    if room is None:
        raise NotAllowed(slug)
    return room


def is_member(user_id: int, room_id: int) -> bool:
    return Membership.objects.filter(user_id=user_id, room_id=room_id).exists()


def message_filter(user_id: int) -> Q:
    """The queryset filter version of ``may_see_event``."""
    targeted_at_user = Message.targets.through.objects.filter(message_id=OuterRef("pk"), user_id=user_id)
    return Q(is_targeted=False) | Q(sender_id=user_id) | Q(Exists(targeted_at_user))


def visible_messages(user, room: Room):
    return Message.objects.filter(room=room).filter(message_filter(user.pk))


def may_see_event(user_id: int, sender_id: int, target_user_ids: list[int]) -> bool:
    """Live delivery: the same rule, decided from the data carried in the fan-out event."""
    return not target_user_ids or user_id == sender_id or user_id in target_user_ids


def last_visible_id(user, room: Room) -> int | None:
    return visible_messages(user, room).aggregate(last=Max("id"))["last"]


def rooms_with_last_visible_id(user):
    """The rooms ``user`` belongs to, each annotated with ``last_message_id`` they may see."""
    last_visible = (
        Message.objects.filter(room=OuterRef("pk"))
        .filter(message_filter(user.pk))
        .order_by("-id")
        .values("id")[:1]
    )
    return Room.objects.filter(memberships__user=user).annotate(last_message_id=Subquery(last_visible))
