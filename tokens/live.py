"""Pushes credential events to live websockets in every process, through the channel layer.

Groups: ``cred.<id>`` holds the sockets opened with one credential, ``user.<id>`` all of one
user's sockets. Sends happen after commit; a channel layer that is down is logged, not raised,
because the revocation itself is already durable (new requests are refused by the verifier).
"""

import asyncio
import logging

from asgiref.sync import async_to_sync
from channels.layers import get_channel_layer
from django.db import transaction

logger = logging.getLogger(__name__)

CLOSE_EVENT = "credential.revoked"
# Seconds for all the sends of one change; generous enough for a fresh process (a management
# command) to connect to Redis on a busy machine.
SEND_TIMEOUT = 5.0


def credential_group(credential_id: str) -> str:
    return f"cred.{credential_id}"


def user_group(user_id: int) -> str:
    return f"user.{user_id}"


def close_sockets_after_commit(*groups: str) -> None:
    transaction.on_commit(lambda: send_to_groups(groups, {"type": CLOSE_EVENT}))


def send_to_groups(groups, event: dict) -> None:
    groups = list(groups)
    layer = get_channel_layer()
    if layer is None or not groups:
        return

    async def send_all():
        await asyncio.gather(*(layer.group_send(group, event) for group in groups))

    try:
        # One deadline for all groups: the change is committed already, and a hung Redis must
        # not hold the request (revoking a user with many tokens included).
        async_to_sync(asyncio.wait_for)(send_all(), SEND_TIMEOUT)
    except Exception as exc:
        # One line, no traceback: during a Redis outage this happens on every revocation.
        logger.warning("could not notify %d group(s) %s: %s", len(groups), groups[:3], type(exc).__name__)
