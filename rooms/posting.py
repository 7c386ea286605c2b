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
        room = room_for_member(user, slug, lock=True)
        if client_id is not None:
            original = Message.objects.filter(room=room, sender=user, client_id=client_id).first()
            if original is not None:
                ids = list(original.targets.values_list("id", flat=True))
                return Posted(message_dict(original, user, ids), created=False)
        if targets:
            members = set(
                Membership.objects.filter(room=room, user_id__in=targets).values_list("user_id", flat=True)
            )
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
    metrics.message_posted(targeted=bool(targets))
    return Posted(payload, created=True)


def post_messages(user, items) -> list:
    """Several posts of one sender, in order, in one call (one thread hop for a websocket that
    sent several ``send`` frames in a row); each in its own transaction, as ``post_message``.
    ``items``: (slug, body, client_id, target_user_ids). Each result is the ``Posted`` or the
    refusal (NotAllowed, InvalidMessage). A database that fails ends the batch: the remaining
    items share its error, rather than each waiting for the same timeout again."""
    results: list = []
    for index, (slug, body, client_id, targets) in enumerate(items):
        try:
            results.append(post_message(user, slug, body, client_id, targets))
        except (NotAllowed, InvalidMessage) as exc:
            results.append(exc)
        except (OperationalError, InterfaceError) as exc:
            results.extend([exc] * (len(items) - index))
            break
    return results
