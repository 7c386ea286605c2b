"""Fail closed, in-process (live.fail_closed): the watch's rule, on both backends. The real
partition is tests/test_fail_closed_e2e.py."""

import asyncio
import logging
import re
import time

import pytest
from channels.db import database_sync_to_async

from foundation import metrics
from live.fail_closed import FAIL_AFTER
from live.hub import current_hub
from tests.comm import closed_with, hello, open_socket
from tests.conftest import bearer

pytestmark = pytest.mark.django_db(transaction=True)


async def connected(user):
    raw = await database_sync_to_async(bearer)(user)
    return (await hello(headers=[(b"authorization", f"Bearer {raw}".encode())]))[0], raw


async def test_a_process_that_has_not_read_the_log_for_the_bound_closes_its_sockets_1013(alice, bob):
    sockets = [(await connected(alice))[0], (await connected(bob))[0]]
    hub = current_hub()
    hub.poller.stop()  # this test plays the poller
    hub.poller.read_at = time.monotonic() - FAIL_AFTER - 0.1

    hub.fail_closed.check(time.monotonic())

    for socket in sockets:
        assert await closed_with(socket) == (1013, "unavailable")
    assert hub.failing_closed
    assert metrics.FAILING_CLOSED._value.get() == 1


async def test_while_failing_closed_new_sockets_are_refused_1013_until_the_log_is_read(alice):
    first, raw = await connected(alice)
    hub = current_hub()
    hub.poller.stop()
    hub.poller.read_at = time.monotonic() - FAIL_AFTER - 0.1
    hub.fail_closed.check(time.monotonic())
    assert await closed_with(first) == (1013, "unavailable")

    refused = await open_socket(headers=[(b"authorization", f"Bearer {raw}".encode())])
    assert await closed_with(refused) == (1013, "unavailable")

    hub.poller.read_at = time.monotonic()  # the log was read again
    hub.fail_closed.check(time.monotonic())
    assert not hub.failing_closed
    again, _ = await hello(headers=[(b"authorization", f"Bearer {raw}".encode())])
    await again.disconnect()
    assert metrics.FAILING_CLOSED._value.get() == 0


async def test_a_poller_waiting_for_a_busy_event_loop_is_not_a_partition(alice):
    socket, _ = await connected(alice)
    hub = current_hub()
    hub.poller.stop()
    hub.poller.read_at = time.monotonic() - FAIL_AFTER - 0.1
    hub.poller.waiting_on_loop = True  # it read the log and waits for the loop to apply it

    hub.fail_closed.check(time.monotonic())

    assert not hub.failing_closed
    await socket.send_json_to({"type": "ping"})
    assert await socket.receive_json_from() == {"type": "pong"}
    hub.poller.waiting_on_loop = False
    await socket.disconnect()


async def test_a_live_poller_keeps_the_process_open(alice):
    socket, _ = await connected(alice)
    hub = current_hub()
    deadline = time.monotonic() + FAIL_AFTER + 0.5
    while time.monotonic() < deadline:  # the real poller and the real watch, for longer than the bound
        await socket.send_json_to({"type": "ping"})
        assert await socket.receive_json_from() == {"type": "pong"}
        await asyncio.sleep(0.25)
    assert not hub.failing_closed
    await socket.disconnect()


def lags_over(seconds: float) -> float:
    """How many times the watch has run more than ``seconds`` late (native_event_loop_lag_seconds)."""
    (histogram,) = metrics.EVENT_LOOP_LAG.collect()
    samples = {(s.name, s.labels.get("le")): s.value for s in histogram.samples}
    return (
        samples[("native_event_loop_lag_seconds_count", None)]
        - samples[("native_event_loop_lag_seconds_bucket", str(seconds))]
    )


async def test_a_starved_event_loop_is_measured_and_named_when_the_process_fails_closed(alice, caplog):
    socket, _ = await connected(alice)
    hub = current_hub()
    before = lags_over(0.5)

    time.sleep(1.6)  # the whole event loop stops, as in a process starved of CPU
    await asyncio.sleep(0.3)  # the real watch (it wakes at least once a second) runs, late once

    assert lags_over(0.5) >= before + 1
    hub.poller.stop()
    hub.poller.read_at = time.monotonic() - FAIL_AFTER - 0.1
    with caplog.at_level(logging.ERROR, logger="live.fail_closed"):
        hub.fail_closed.check(time.monotonic())
    late = float(re.search(r"event loop ran up to ([0-9.]+) s late", caplog.text)[1])
    assert 0.55 <= late < 3.0 and "starved of CPU" in caplog.text
    assert await closed_with(socket) == (1013, "unavailable")
