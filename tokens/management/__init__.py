"""Helpers shared by the operator commands (tokens and rooms), so they fail in the same words."""

from django.conf import settings
from django.contrib.auth import get_user_model
from django.core.management.base import CommandError


def user_or_error(username: str):
    """The user called ``username``, or a CommandError (non-zero exit)."""
    user = get_user_model().objects.filter(username=username).first()
    if user is None:
        raise CommandError(f"no user named {username!r}")
    return user


# Embedded mode (no REDIS_URL): the channel layer and the cache live inside each process, so a
# command cannot signal the server. The database change itself is durable either way.
IN_MEMORY_LAYER_NOTE = (
    "note: REDIS_URL is not set, so this command cannot signal a running server: its live "
    "websockets do not notice this change, and a deny-listed service token may still be accepted "
    "there for up to 60 s. For an immediate effect make the change in /admin/ (it runs inside the "
    "server) or restart the server."
)


def reaches_other_processes() -> bool:
    """False in the embedded setup: an in-memory channel layer lives and dies with this process."""
    backend = settings.CHANNEL_LAYERS.get("default", {}).get("BACKEND", "")
    return not backend.endswith("InMemoryChannelLayer")
