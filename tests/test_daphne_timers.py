"""daphne's reaping, pings and timeouts, run only for the connections they are due for
(config/daphne_timers.py).

The unit tests drive the checkers with a fake clock over daphne's real protocol class (its own
``check_timeouts``), on a server whose connection table refuses to be walked: daphne's own
checkers walk it every tick, ours must not. The end-to-end test sees the pings on the wire of
a real daphne.
"""

import asyncio
import base64
import os
import socket
import struct
import time
from types import SimpleNamespace

import pytest
from daphne import ws_protocol
from daphne.ws_protocol import WebSocketProtocol

from config import daphne_timers
from tests.conftest import bearer

T0 = 1_000_000.0


class Clock:
    def __init__(self):
        self.now = T0

    def time(self) -> float:
        return self.now


class UnwalkableConnections(dict):
    """daphne's connection table, but a walk over it fails the test."""

    def _walk(self, *args):
        raise AssertionError("a checker walked every connection")

    items = keys = values = __iter__ = _walk


@pytest.fixture
def clock(monkeypatch):
    clock = Clock()
    monkeypatch.setattr(daphne_timers, "time", clock)
    monkeypatch.setattr(ws_protocol, "time", clock)
    monkeypatch.setattr(daphne_timers, "_call_later", lambda delay, function: None)
    return clock


@pytest.fixture
def loop():
    loop = asyncio.new_event_loop()
    yield loop
    loop.close()


@pytest.fixture
def server():
    return SimpleNamespace(
        connections=UnwalkableConnections(),
        ping_interval=20,
        websocket_timeout=86400,
        websocket_connect_timeout=5,
        http_timeout=None,
        application_close_timeout=10,
        application_checker=None,
        timeout_checker=None,
        stop=lambda: None,
    )


def websocket(server, clock, *, state="open"):
    """A daphne websocket protocol as onConnect leaves it, recording what the checks do to it."""
    protocol = WebSocketProtocol.__new__(WebSocketProtocol)
    protocol.server = server
    protocol.client_addr, protocol.path = ("127.0.0.1", 50000), b"/api/ws/native"
    protocol.state = protocol.STATE_OPEN if state == "open" else protocol.STATE_CONNECTING
    protocol.socket_opened = protocol.last_ping = clock.now
    protocol.done = []
    protocol._sendAutoPing = lambda: protocol.done.append(("ping", clock.now - T0))
    protocol.serverReject = lambda: protocol.done.append(("reject", clock.now - T0))
    protocol.serverClose = lambda: protocol.done.append(("close", clock.now - T0))
    protocol.handle_exception = lambda exception: protocol.done.append(("exception", exception))
    server.connections[protocol] = {"connected": clock.now}
    daphne_timers.on_connected(server, protocol)
    return protocol


def run_for(server, clock, seconds: int) -> None:
    """``seconds`` one-second ticks of both checkers."""
    for _ in range(seconds):
        clock.now += 1
        daphne_timers.timeout_checker(server)
        daphne_timers.application_checker(server)


@pytest.fixture
def visits(monkeypatch):
    seen = []
    real = WebSocketProtocol.check_timeouts

    def check_timeouts(self):
        seen.append(self)
        real(self)

    monkeypatch.setattr(WebSocketProtocol, "check_timeouts", check_timeouts)
    return seen


def test_idle_sockets_are_not_visited_until_their_ping_falls_due(server, clock, visits):
    sockets = [websocket(server, clock) for _ in range(10_000)]
    run_for(server, clock, 20)
    assert visits == []  # daphne visited each of them ten times by now
    run_for(server, clock, 1)
    assert len(visits) == 10_000
    assert all(s.done == [("ping", 21.0)] for s in sockets)
    run_for(server, clock, 21)
    assert all(s.done == [("ping", 21.0), ("ping", 42.0)] for s in sockets)
    assert len(visits) == 20_000


def test_traffic_from_the_client_puts_the_ping_off(server, clock):
    talking, silent = websocket(server, clock), websocket(server, clock)
    clock.now += 10
    talking.last_ping = clock.now  # what daphne's onMessage does
    run_for(server, clock, 11)
    assert silent.done == [("ping", 21.0)]
    assert talking.done == []
    run_for(server, clock, 10)
    assert talking.done == [("ping", 31.0)]


def test_a_handshake_the_application_never_answers_is_rejected_after_the_connect_timeout(server, clock):
    hanging = websocket(server, clock, state="connecting")
    run_for(server, clock, 5)
    assert hanging.done == []
    run_for(server, clock, 1)
    assert hanging.done == [("reject", 6.0)]


def test_a_socket_that_opens_is_pinged_an_interval_after_it_opened(server, clock, visits):
    sock = websocket(server, clock, state="connecting")
    run_for(server, clock, 1)
    sock.state, sock.last_ping = sock.STATE_OPEN, clock.now  # what daphne's onOpen leaves
    daphne_timers.on_connected(server, sock)
    run_for(server, clock, 21)
    assert sock.done == [("ping", 22.0)]  # not rejected by the connect timeout it was filed for
    assert visits == [sock]  # and checked once, not once per filing


def test_the_websocket_timeout_closes_a_socket(server, clock):
    server.websocket_timeout = 30
    sock = websocket(server, clock)
    run_for(server, clock, 30)
    assert ("close", 31.0) not in sock.done
    run_for(server, clock, 1)
    assert ("close", 31.0) in sock.done


def started(server, protocol, loop):
    application = loop.create_future()
    server.connections[protocol]["application_instance"] = application
    daphne_timers.on_application_started(server, protocol)
    return application


def settle(loop) -> None:
    loop.run_until_complete(asyncio.sleep(0))  # done callbacks run on the loop


def disconnect(server, protocol, clock) -> None:
    server.connections[protocol]["disconnected"] = clock.now  # daphne's protocol_disconnected
    daphne_timers.on_disconnected(server, protocol)


def test_a_finished_application_is_reaped_and_a_closed_connection_forgotten(server, clock, loop):
    protocol = websocket(server, clock)
    running = [websocket(server, clock) for _ in range(1_000)]
    for other in running:
        started(server, other, loop)
    application = started(server, protocol, loop)
    application.set_result(None)
    settle(loop)
    run_for(server, clock, 1)
    assert "application_instance" not in server.connections[protocol]
    assert all("application_instance" in server.connections[other] for other in running)
    disconnect(server, protocol, clock)
    run_for(server, clock, 1)
    assert protocol not in server.connections
    assert len(server.connections) == 1_000
    # Nothing keeps the forgotten connection alive: no bucket holds it, nor the reaping set.
    schedule = daphne_timers._schedule(server)
    assert all(protocol not in bucket for bucket in schedule.buckets.values())
    assert protocol not in schedule.to_reap


def test_an_application_outliving_its_connection_is_cancelled_after_the_close_timeout(server, clock, loop):
    protocol = websocket(server, clock)
    application = started(server, protocol, loop)
    disconnect(server, protocol, clock)
    run_for(server, clock, 10)
    assert not application.cancelled()
    run_for(server, clock, 1)
    assert application.cancelled()
    settle(loop)
    run_for(server, clock, 1)
    assert protocol not in server.connections


def test_an_application_error_is_logged_and_handed_to_its_open_connection(server, clock, loop, caplog):
    protocol = websocket(server, clock)
    application = started(server, protocol, loop)
    failure = RuntimeError("boom")
    application.set_exception(failure)
    settle(loop)
    run_for(server, clock, 1)
    assert ("exception", failure) in protocol.done
    assert "Exception inside application: boom" in caplog.text


# --- on the wire ------------------------------------------------------------------------------


def read_frame(sock: socket.socket) -> tuple[int, bytes]:
    def exactly(n: int) -> bytes:
        data = b""
        while len(data) < n:
            chunk = sock.recv(n - len(data))
            if not chunk:
                raise ConnectionError("closed")
            data += chunk
        return data

    first, second = exactly(2)
    length = second & 0x7F
    if length == 126:
        (length,) = struct.unpack("!H", exactly(2))
    elif length == 127:
        (length,) = struct.unpack("!Q", exactly(8))
    return first & 0x0F, exactly(length)


def pong(payload: bytes) -> bytes:
    mask = os.urandom(4)
    return bytes([0x8A, 0x80 | len(payload)]) + mask + bytes(b ^ mask[i % 4] for i, b in enumerate(payload))


@pytest.mark.django_db(transaction=True)
def test_a_real_daphne_pings_an_idle_socket_at_its_interval(server_factory, alice):
    proc = server_factory(options=("--ping-interval", "2"), name="pings")
    sock = socket.create_connection(("127.0.0.1", proc.port), timeout=10)
    key = base64.b64encode(os.urandom(16)).decode()
    sock.sendall(
        (
            f"GET /api/ws/native HTTP/1.1\r\nHost: 127.0.0.1:{proc.port}\r\n"
            f"Upgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Key: {key}\r\n"
            f"Sec-WebSocket-Version: 13\r\nAuthorization: Bearer {bearer(alice)}\r\n\r\n"
        ).encode()
    )
    head = b""
    while b"\r\n\r\n" not in head:
        head += sock.recv(1)
    assert head.startswith(b"HTTP/1.1 101")
    pings = []
    started_at = time.monotonic()
    while len(pings) < 2:
        opcode, payload = read_frame(sock)
        if opcode == 0x9:
            pings.append(time.monotonic() - started_at)
            sock.sendall(pong(payload))
    sock.close()
    # Each ping comes on the first tick after the interval: 2-3 s apart, and no sooner.
    assert 2.0 <= pings[0] <= 4.5
    assert 2.0 <= pings[1] - pings[0] <= 4.5
