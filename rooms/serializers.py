"""Rooms and messages in their wire shape (native_api.schemas.http declares it).

``message_dict`` returns a plain dict because it travels through the channel layer (msgpack)
inside the fan-out event; it is built from the ``Message`` declaration, so it has exactly that
shape and encodes exactly like it.
"""

import msgspec

from native_api.schemas.http import Message, User
from native_api.timestamps import isoformat


def user_struct(user) -> User:
    return User(id=user.pk, username=user.get_username())


def user_dict(user) -> dict:
    return msgspec.structs.asdict(user_struct(user))


def message_struct(message, sender, target_user_ids) -> Message:
    return Message(
        id=message.pk,
        room=message.room.slug,
        sender=user_struct(sender),
        body=message.body,
        created_at=isoformat(message.created_at),
        client_id=message.client_id,
        target_user_ids=sorted(target_user_ids),
    )


def message_dict(message, sender, target_user_ids) -> dict:
    return msgspec.to_builtins(message_struct(message, sender, target_user_ids))


def with_relations(messages):
    """A message queryset that serializes with three queries in all, however long."""
    return messages.select_related("sender", "room").prefetch_related("targets")


def loaded_message_dict(message) -> dict:
    """``message_dict`` for a message fetched through ``with_relations``."""
    targets = [t.pk for t in message.targets.all()] if message.is_targeted else []
    return message_dict(message, message.sender, targets)
