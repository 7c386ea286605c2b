"""Users and messages as plain values: what a room event carries through the channel layer
(msgpack) and what history and posting return.

The wire declares the same shapes (native_api.schemas.http: User, Message), validates them and
publishes them in the OpenAPI document; the domain builds the values without knowing the wire.
Keys come in the declaration's field order, so a dict encodes exactly like the declared struct
(tests/test_schemas_frames.py and tests/test_architecture.py hold the two together).
"""

from foundation.timestamps import isoformat


def user_dict(user) -> dict:
    return {"id": user.pk, "username": user.get_username()}


def message_dict(message, sender, target_user_ids) -> dict:
    return {
        "id": message.pk,
        "room": message.room.slug,
        "sender": user_dict(sender),
        "body": message.body,
        "created_at": isoformat(message.created_at),
        "client_id": message.client_id,
        "target_user_ids": sorted(target_user_ids),
    }


def with_relations(messages):
    """A message queryset that serializes with three queries in all, however long."""
    return messages.select_related("sender", "room").prefetch_related("targets")


def loaded_message_dict(message) -> dict:
    """``message_dict`` for a message fetched through ``with_relations``."""
    targets = [t.pk for t in message.targets.all()] if message.is_targeted else []
    return message_dict(message, message.sender, targets)
