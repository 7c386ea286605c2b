"""What a finished daphne connection holds in reference cycles, cut when daphne forgets it.

live.heap takes long-lived objects out of the garbage collector's walk (``gc.freeze``): a full
collection of a process holding 17,000 sockets walked 2 M objects for 2-3 s, longer than the
enforcement bound. Frozen objects are still freed by reference counting, but not when a cycle
holds them, so a closed connection must leave no cycle behind. daphne 4.2.3 (pinned), autobahn
and twisted leave these (our consumer's own are cut in native_api.consumer):

- autobahn resolves ``is_closed`` with the protocol itself (protocol → Deferred → protocol);
- the HTTP channel that did the websocket handshake stays its transport's producer and keeps
  the transport and its request (channel ↔ transport, channel ↔ request).

Cut here, a connection is freed by reference counting as soon as daphne forgets it (closed, its
application finished). tests/test_heap.py counts what closed sockets leave frozen in a real daphne.
"""

_DEFERREDS = ("is_open", "is_closed", "application_deferred")


def handshake_done(request) -> None:
    """daphne is done with ``request`` (an HTTP request). If it upgraded its connection to a
    websocket, the websocket keeps it, to cut its channel's cycles when the websocket ends (the
    channel stays the transport's producer until then)."""
    from daphne.ws_protocol import WebSocketProtocol

    channel = getattr(request, "channel", None)
    websocket = getattr(getattr(channel, "transport", None), "protocol", None)
    if isinstance(websocket, WebSocketProtocol):
        websocket._native_handshake = request


def release(protocol) -> None:
    """``protocol`` is over and forgotten by daphne. Only a websocket's objects are cut: an HTTP
    request's channel may be serving the next request of a kept-alive connection."""
    from daphne.ws_protocol import WebSocketProtocol

    if not isinstance(protocol, WebSocketProtocol):
        return
    for name in _DEFERREDS:
        if getattr(protocol, name, None) is not None:
            setattr(protocol, name, None)
    request = getattr(protocol, "_native_handshake", None)
    channel = getattr(request, "channel", None)
    protocol._native_handshake = None
    if channel is None:
        return
    for each in getattr(channel, "requests", ()):
        each.channel = None
    channel.requests = []
    channel.transport = None
