"""Posting a message: one function shared by REST and the websocket.

validate → lock the room row → idempotency check → assign the room's next seq → insert →
after commit, the event leaves through rooms.room_events (this process's hub and one
channel-layer send to the room group). Holding the room lock from seq
assignment to commit is what makes ids grow in commit order within a room.
"""

from dataclasses import dataclass

from django.db import InterfaceError, OperationalError, transaction

from foundation import metrics
from rooms import room_events
from rooms.models import Membership, Message
from rooms.serializers import message_dict
from rooms.visibility import NotAllowed, room_for_member

MAX_BODY = 4000
MAX_CLIENT_ID = 64
MAX_TARGETS = 100


class InvalidMessage(ValueError):
    """The message fields break the contract (API 400 invalid_request)."""


@dataclass(frozen=True)
class Posted:
    message: dict
    created: bool  # False when a client_id retry returned the original


def validate(body, client_id, target_user_ids) -> list[int]:
    if not isinstance(body, str) or not 1 <= len(body) <= MAX_BODY:
        raise InvalidMessage(f"body must be a string of 1 to {MAX_BODY} characters")
    if client_id is not None and (not isinstance(client_id, str) or not 1 <= len(client_id) <= MAX_CLIENT_ID):
        raise InvalidMessage(f"client_id must be a string of 1 to {MAX_CLIENT_ID} characters")
    if target_user_ids is None:
        return []
    if not isinstance(target_user_ids, list) or len(target_user_ids) > MAX_TARGETS:
        raise InvalidMessage(f"target_user_ids must be a list of at most {MAX_TARGETS} user ids")
    if not all(type(t) is int and 0 < t < 2**63 for t in target_user_ids):
        raise InvalidMessage("target_user_ids must contain positive integers")
    return sorted(set(target_user_ids))


def post_message(user, slug: str, body, client_id=None, target_user_ids=None) -> Posted:
    targets = validate(body, client_id, target_user_ids)
    with transaction.atomic():
        posted = _insert(user, slug, body, client_id, targets)
    if posted.created:
        metrics.message_posted(targeted=bool(targets))
    return posted


def _insert(user, slug: str, body, client_id, targets: list[int]) -> Posted:
    """One message, inside the caller's transaction. Every refusal (NotAllowed, InvalidMessage)
    is raised before the first write, so a refused message leaves the transaction as it was."""
    room = room_for_member(user, slug, lock=True)
    if client_id is not None:
        original = Message.objects.filter(room=room, sender=user, client_id=client_id).first()
        if original is not None:
            ids = list(original.targets.values_list("id", flat=True))
            return Posted(message_dict(original, user, ids), created=False)
    if targets:
        found = Membership.objects.filter(room=room, user_id__in=targets).values_list("user_id", flat=True)
        members = set(found)
        if members != set(targets):
            raise InvalidMessage("target_user_ids must all be members of the room")
    room.last_seq += 1
    room.save(update_fields=["last_seq"])
    message = Message.objects.create(
        room=room,
        seq=room.last_seq,
        sender=user,
        body=body,
        client_id=client_id,
        is_targeted=bool(targets),
    )
    if targets:
        message.targets.add(*targets)
    payload = message_dict(message, user, targets)
    event = {"type": "room.message", "room_id": room.pk, "seq": message.seq, "message": payload}
    transaction.on_commit(lambda: room_events.publish(event))
    return Posted(payload, created=True)


def post_messages(user, items) -> list:
    """Several posts of one sender, in order, in one call (one thread hop for a websocket that
    sent several ``send`` frames in a row). ``items``: (slug, body, client_id, target_user_ids).
    Each result is the ``Posted`` or the refusal (NotAllowed, InvalidMessage).

    Consecutive posts to one room share one transaction: one commit, so one WAL flush, for a
    burst instead of one each (with ten in flight, the flush was most of a post's time). That is
    the same as posting them one by one: the room's lock is held from the first seq to the
    commit, so ids still grow in commit order; a refused post wrote nothing (``_insert``), so it
    takes nothing back from the others; the events leave after the commit, in frame order; and
    each ack still waits for the commit of its message. A transaction holds one room's lock at a
    time, as a single post does, so two senders cannot deadlock on two rooms.

    A database that fails ends the batch: the posts of the failed transaction and every later
    one share its error (a client retries them with their ``client_id``), rather than each
    waiting for the same timeout again."""
    results: list = []
    start = 0
    while start < len(items):
        end = start + 1
        while end < len(items) and items[end][0] == items[start][0]:
            end += 1
        try:
            results.extend(_post_to_one_room(user, items[start:end]))
        except (OperationalError, InterfaceError) as exc:
            results.extend([exc] * (len(items) - start))
            break
        start = end
    return results


def _post_to_one_room(user, items) -> list:
    outcomes: list = []
    with transaction.atomic():
        for slug, body, client_id, target_user_ids in items:
            try:
                targets = validate(body, client_id, target_user_ids)
                outcomes.append(_insert(user, slug, body, client_id, targets))
            except (NotAllowed, InvalidMessage) as exc:
                outcomes.append(exc)
    for (_slug, _body, _client_id, target_user_ids), outcome in zip(items, outcomes, strict=True):
        if isinstance(outcome, Posted) and outcome.created:
            metrics.message_posted(targeted=bool(target_user_ids))
    return outcomes
