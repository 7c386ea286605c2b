"""Lua scripts on Redis, and a read of one layer carried by another layer's round trip.

A request may need two things from the same Redis that two layers own: ``GET /api/native/me``
reads the wire's failed-auth lockout (native_api/counters.py) and the engine's live-socket count
of its credential (live/presence_redis.py). Two round trips would be one too many, and neither
layer should learn the other's keys. So the owner of a read states it as one script call, a
``PendingRead``; the layer that makes the request's round trip anyway sends that call in the
same pipeline as its own and hands the reply back, without knowing what it reads; whoever
needs the value asks the read for it. The engine never imports the wire, the wire only carries
an opaque call, and both import this module (DESIGN.md: imports point down).

Scripts are sent by their SHA-1 (``EVALSHA``). A server that does not have one yet (a restart, a
new primary after a failover) answers NOSCRIPT, and that call is sent again in full (``EVAL``),
which caches it there: one more round trip, once per server.

Scripts may read keys they do not declare (the registry's count follows its index into each
process's keys): right on one Redis, Sentinel's primary included, and not on Redis Cluster,
which the project does not support (docs/operations-scaling.md).
"""

import hashlib
from collections.abc import Sequence
from dataclasses import dataclass

import redis
from redis.exceptions import NoScriptError


class Script:
    """One Lua script, named by its SHA-1 as Redis names it."""

    def __init__(self, source: bytes):
        self.source = source
        self.sha = hashlib.sha1(source, usedforsecurity=False).hexdigest()

    def call(self, keys: Sequence[str], args: Sequence = ()) -> "ScriptCall":
        return ScriptCall(self, tuple(keys), tuple(args))

    def run(self, client: redis.Redis, keys: Sequence[str], args: Sequence = ()):
        """The script's reply, in one round trip; raises what Redis raises."""
        try:
            return client.evalsha(self.sha, len(keys), *keys, *args)
        except NoScriptError:  # a fresh server: EVAL caches it there
            return client.eval(self.source, len(keys), *keys, *args)


@dataclass(frozen=True)
class ScriptCall:
    script: Script
    keys: tuple[str, ...]
    args: tuple


def run_together(client: redis.Redis, calls: Sequence[ScriptCall]) -> list:
    """Each call's reply, or the error Redis answered it with (an exception, not raised), in one
    round trip: one pipeline, not a transaction (each script is atomic by itself). Raises what
    the connection raises (unreachable, timed out)."""
    replies = _pipeline(client, calls, full=False)
    missing = [i for i, reply in enumerate(replies) if isinstance(reply, NoScriptError)]
    if missing:
        for i, reply in zip(missing, _pipeline(client, [calls[i] for i in missing], full=True), strict=True):
            replies[i] = reply
    return replies


def _pipeline(client: redis.Redis, calls: Sequence[ScriptCall], *, full: bool) -> list:
    pipe = client.pipeline(transaction=False)
    for call in calls:
        name = call.script.source if full else call.script.sha
        (pipe.eval if full else pipe.evalsha)(name, len(call.keys), *call.keys, *call.args)
    return pipe.execute(raise_on_error=False)


_NOT_CARRIED = object()


class PendingRead:
    """A read of one Redis that a request needs and another round trip to that Redis may carry.

    ``url`` is the Redis it reads (a carrier connected elsewhere must leave it alone) and
    ``call`` the script that reads it; None for either means that no carrier may take it (a
    read with no Redis at all, as on the embedded default). A carrier sends ``call`` with its own
    calls and gives the reply, or the error Redis answered it with, to ``carried``. ``value()``
    is the answer: from the carried reply, or, when nothing carried it (no carrier on this path,
    the carrier's round trip failed), from the read made alone, exactly as it would have been
    made without a carrier. Subclasses say how: ``alone``, ``answer`` and ``failed``.
    """

    url: str | None = None
    call: ScriptCall | None = None
    _reply = _NOT_CARRIED

    def carried(self, reply) -> None:
        self._reply = reply

    def value(self):
        reply = self._reply
        if reply is _NOT_CARRIED:
            return self.alone()
        if isinstance(reply, Exception):
            return self.failed(reply)
        return self.answer(reply)

    def alone(self):
        """The value, read without a carrier."""
        raise NotImplementedError

    def answer(self, reply):
        """The value from ``call``'s reply."""
        raise NotImplementedError

    def failed(self, error: Exception):
        """The value when Redis answered ``call`` with ``error``."""
        raise error
