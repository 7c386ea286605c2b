"""The change-log poller's cadence (live/poller.py): a poll that took longer than the interval
(a busy event loop applying what it read) is followed at once by the next, not by a sleep, so
the age that live.fail_closed measures does not grow by a whole interval on top of the wait."""

import logging
import re
import threading
import time

from live.poller import Poller


def test_a_slow_poll_is_followed_at_once_and_a_quick_one_after_the_interval(settings, monkeypatch):
    settings.NATIVE_LIVE_POLL_INTERVAL = 0.3
    poller = Poller(hub=None)
    started = []
    done = threading.Event()

    def poll_once():
        started.append(time.monotonic())
        if len(started) == 2:
            time.sleep(0.5)  # the second poll waits on a busy loop for longer than the interval
        if len(started) == 4:
            done.set()

    monkeypatch.setattr(poller, "poll_once", poll_once)
    monkeypatch.setattr("live.poller.connection.close", lambda: None)
    thread = threading.Thread(target=poller._run, daemon=True)
    thread.start()
    assert done.wait(5)
    poller.stop()
    thread.join(2)
    gaps = [b - a for a, b in zip(started, started[1:], strict=False)]
    assert gaps[0] >= 0.29  # a quick poll: the next one after the interval
    assert 0.5 <= gaps[1] < 0.75  # the slow one (0.5 s), then the next at once
    assert gaps[2] >= 0.29  # quick again: back to the interval


def test_a_slow_poll_says_where_its_time_went(monkeypatch, caplog):
    poller = Poller(hub=None)
    poller._last_heads = poller._last_beat = time.monotonic() + 60  # neither is due in this poll

    def slow_head():
        time.sleep(1.1)  # a database (or a starved process) answering late
        return poller.epoch, poller.cursor

    monkeypatch.setattr("live.poller.head_position", slow_head)
    with caplog.at_level(logging.WARNING, logger="live.poller"):
        poller.poll_once()
    assert re.search(r"change log poll took 1\.\d\d s: head 1\.\d\d s, rows 0\.00 s", caplog.text)

    caplog.clear()
    monkeypatch.setattr("live.poller.head_position", lambda: (poller.epoch, poller.cursor))
    with caplog.at_level(logging.WARNING, logger="live.poller"):
        poller.poll_once()
    assert "change log poll took" not in caplog.text  # a quick poll says nothing
