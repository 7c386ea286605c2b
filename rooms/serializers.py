"""The JSON shapes of API.md for rooms and messages."""

from native_api.timestamps import isoformat


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
