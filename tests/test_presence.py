"""The live-socket registry: what operators and users see as "connected right now".

In-process (the embedded default) and Redis (shared by every process). The Redis tests use two
registries with different process names on one Redis, as two server processes would, and a
real child process killed with SIGKILL for expiry.
"""

import logging
import os
import signal
import subprocess
import sys
import textwrap
import time
import uuid
from datetime import UTC, datetime

import pytest
import redis

from live import presence
from live.presence import InProcessRegistry, LiveSocket
from live.presence_redis import RedisRegistry
from tests.server import ROOT

REDIS_URL = os.environ.get("REDIS_URL")


def socket_of(connection_id, credential_id="tokA", user_id=1, process="host:1", ip="203.0.113.5"):
    return LiveSocket(
        connection_id, credential_id, user_id, process, ip, datetime(2026, 1, 2, 3, 4, 5, tzinfo=UTC)
    )


# --- in-process --------------------------------------------------------------------------------


def test_the_in_process_registry_answers_by_credential_and_by_user():
    registry = InProcessRegistry()
    registry.opened(socket_of("c1", "tokA", 1))
    registry.opened(socket_of("c2", "tokA", 1))
    registry.opened(socket_of("c3", "tokB", 2))
    registry.closed("c2")
    registry.closed("never-opened")

    found = registry.for_credentials(["tokA", "tokB", "tokC"])

    assert [s.connection_id for s in found["tokA"]] == ["c1"]
    assert [s.connection_id for s in found["tokB"]] == ["c3"]
    assert found["tokC"] == []
    assert [s.connection_id for s in registry.for_user(2)] == ["c3"]
    assert {s.connection_id for s in registry.all_sockets()} == {"c1", "c3"}


def test_without_redis_the_module_uses_the_in_process_registry(settings):
    settings.REDIS_URL = None
    presence.use_registry(None)
    try:
        presence.opened(socket_of("m1", "tokM", 7))
        assert presence.counts_for_credentials(["tokM", "other"]) == {"tokM": 1, "other": 0}
        assert isinstance(presence.registry(), InProcessRegistry)
    finally:
        presence.use_registry(None)


def test_the_in_process_count_of_one_credential_needs_no_redis():
    registry = InProcessRegistry()
    for connection_id, credential_id in (("c1", "tokA"), ("c2", "tokA"), ("c3", "tokB")):
        registry.opened(socket_of(connection_id, credential_id))
    read = registry.count_read("tokA")
    assert read.call is None and read.url is None  # nothing for a round trip to Redis to carry
    assert read.value() == 2


# --- Redis --------------------------------------------------------------------------------------

redis_only = pytest.mark.redis


@pytest.fixture
def prefix():
    name = f"test-presence-{uuid.uuid4().hex[:8]}"
    yield name
    client = redis.Redis.from_url(REDIS_URL)
    for key in client.scan_iter(f"{name}:*", count=1000):
        client.delete(key)


@pytest.fixture
def registries(prefix):
    made = []

    def make(process, **kwargs):
        registry = RedisRegistry(REDIS_URL, prefix=prefix, process=process, **kwargs)
        made.append(registry)
        return registry

    yield make
    for registry in made:
        registry.stop(forget=False)


def wait_for(predicate, timeout=5.0):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(0.02)
    return predicate()


@redis_only
def test_two_processes_see_each_others_sockets(registries):
    a = registries("host-a:1")
    b = registries("host-b:2")
    a.opened(socket_of("a1", "tok1", 1, "host-a:1"))
    a.opened(socket_of("a2", "tok2", 1, "host-a:1"))
    b.opened(socket_of("b1", "tok1", 2, "host-b:2", ip="2001:db8::1"))
    a.flush(), b.flush()

    for reader in (a, b):
        found = reader.for_credentials(["tok1", "tok2", "tok3"])
        assert {(s.connection_id, s.process) for s in found["tok1"]} == {
            ("a1", "host-a:1"),
            ("b1", "host-b:2"),
        }
        assert [s.connection_id for s in found["tok2"]] == ["a2"]
        assert found["tok3"] == []
        assert {s.connection_id for s in reader.for_user(1)} == {"a1", "a2"}
        assert {s.connection_id for s in reader.all_sockets()} == {"a1", "a2", "b1"}
    (b1,) = a.for_user(2)
    assert b1 == socket_of("b1", "tok1", 2, "host-b:2", ip="2001:db8::1")  # every field survives

    a.closed("a1")
    a.flush()
    assert [s.connection_id for s in b.for_credentials(["tok1"])["tok1"]] == ["b1"]


@redis_only
def test_the_background_thread_flushes_without_being_asked(registries):
    a = registries("host-a:1", flush_interval=0.02)
    reader = registries("reader:9")
    a.opened(socket_of("a1", "tok1", 1, "host-a:1"))

    assert wait_for(lambda: len(reader.for_credentials(["tok1"])["tok1"]) == 1)
    a.closed("a1")
    assert wait_for(lambda: reader.for_credentials(["tok1"])["tok1"] == [])


@redis_only
def test_an_idle_registry_writes_only_its_heartbeat(registries, monkeypatch):
    a = registries("host-a:1", flush_interval=0.02, ttl=3.0)
    a.opened(socket_of("a1", "tok1", 1, "host-a:1"))
    assert wait_for(lambda: not a._rewrite and not a._pending)
    flushes = []
    real = a.flush
    monkeypatch.setattr(a, "flush", lambda: flushes.append(time.monotonic()) or real())
    time.sleep(1.5)
    # The heartbeat is due every ttl / 3 = 1 s: at most two wake-ups, not 75 (one per 0.02 s).
    assert 1 <= len(flushes) <= 2
    a.closed("a1")
    reader = registries("reader:9")
    assert wait_for(lambda: reader.for_credentials(["tok1"])["tok1"] == [], timeout=0.5)


@redis_only
def test_a_dead_process_entries_disappear_after_the_ttl_and_are_deleted(registries, prefix):
    doomed = registries("doomed:1", ttl=1.0)
    survivor = registries("survivor:2", ttl=1.0)
    doomed.opened(socket_of("d1", "tok1", 1, "doomed:1"))
    survivor.opened(socket_of("s1", "tok1", 2, "survivor:2"))
    doomed.flush(), survivor.flush()
    assert len(survivor.for_credentials(["tok1"])["tok1"]) == 2
    doomed.stop(forget=False)  # dies without a word, as with kill -9

    time.sleep(1.3)
    survivor.flush()  # keeps its own heartbeat

    assert [s.connection_id for s in survivor.for_credentials(["tok1"])["tok1"]] == ["s1"]
    survivor.clean_dead_processes()  # idempotent: the heartbeat's janitor may have run already
    client = redis.Redis.from_url(REDIS_URL)
    assert not client.exists(f"{prefix}:proc:doomed:1")
    assert client.smembers(f"{prefix}:cred:tok1") == {b"survivor:2|s1"}
    assert client.smembers(f"{prefix}:procs") == {b"survivor:2"}


@redis_only
def test_one_credentials_count_is_what_for_credentials_finds(registries, prefix):
    """count_read (GET /api/native/me) is one script that counts as for_credentials resolves:
    the sockets of live processes only, and no index member whose entry is gone."""
    doomed = registries("doomed:1", ttl=1.0)
    survivor = registries("survivor:2", ttl=1.0)
    doomed.opened(socket_of("d1", "tok1", 1, "doomed:1"))
    survivor.opened(socket_of("s1", "tok1", 2, "survivor:2"))
    survivor.opened(socket_of("s2", "tok1", 2, "survivor:2"))
    survivor.opened(socket_of("s3", "tok2", 2, "survivor:2"))
    doomed.flush(), survivor.flush()
    redis.Redis.from_url(REDIS_URL).sadd(f"{prefix}:cred:tok1", "survivor:2|gone")  # a stale member

    def both(credential_id):
        return survivor.count_read(credential_id).value(), presence_count(survivor, credential_id)

    assert both("tok1") == (3, 3) and both("tok2") == (1, 1) and both("tok3") == (0, 0)
    doomed.stop(forget=False)  # dies without a word, as with kill -9
    time.sleep(1.3)
    assert both("tok1") == (2, 2)  # before any janitor has deleted its entries


@redis_only
def test_a_count_that_cannot_read_redis_answers_with_this_processs_sockets(registries, caplog):
    other, here = registries("host-a:1"), registries("host-b:2")
    other.opened(socket_of("a1", "tok1", 1, "host-a:1"))
    here.opened(socket_of("b1", "tok1", 1, "host-b:2"))
    other.flush(), here.flush()
    assert here.count_read("tok1").value() == 2
    here.client = redis.Redis(host="127.0.0.1", port=1, socket_connect_timeout=0.2, socket_timeout=0.2)
    with caplog.at_level(logging.WARNING, logger="live.presence_redis"):
        assert here.count_read("tok1").value() == 1
    assert "presence: cannot read Redis" in caplog.text


CHILD = textwrap.dedent(
    """
    import sys, time
    from datetime import UTC, datetime
    from live.presence import LiveSocket
    from live.presence_redis import RedisRegistry
    url, prefix = sys.argv[1], sys.argv[2]
    registry = RedisRegistry(url, prefix=prefix, process="child:1", ttl=1.0)
    for i in range(3):
        registry.opened(LiveSocket(f"c{i}", "childtok", 5, "child:1", None, datetime.now(UTC)))
    registry.flush()
    print("ready", flush=True)
    time.sleep(60)
    """
)


@redis_only
def test_a_process_killed_with_sigkill_stops_counting_within_the_ttl(registries, prefix):
    reader = registries("reader:1", ttl=1.0)
    child = subprocess.Popen(
        [sys.executable, "-c", CHILD, REDIS_URL, prefix], cwd=ROOT, stdout=subprocess.PIPE, text=True
    )
    try:
        assert child.stdout.readline().strip() == "ready"
        assert presence_count(reader, "childtok") == 3
        child.send_signal(signal.SIGKILL)
        child.wait(5)
        assert wait_for(lambda: presence_count(reader, "childtok") == 0, timeout=3)
    finally:
        child.kill()
        child.wait()


def presence_count(registry, credential_id):
    return len(registry.for_credentials([credential_id])[credential_id])


@redis_only
def test_a_redis_outage_never_blocks_the_writer_and_the_registry_catches_up(registries, prefix, caplog):
    a = registries("host-a:1")
    a.opened(socket_of("early", "tok1", 1, "host-a:1"))
    a.flush()
    good_client = a.client
    a.client = redis.Redis(host="127.0.0.1", port=1, socket_connect_timeout=0.2, socket_timeout=0.2)

    started = time.perf_counter()
    for i in range(2000):
        a.opened(socket_of(f"during{i}", "tok1", 1, "host-a:1"))
    a.closed("early")
    writer_seconds = time.perf_counter() - started
    with caplog.at_level(logging.WARNING, logger="live.presence_redis"):
        assert a.flush() is False
        assert a.flush() is False
    a.client = good_client
    assert a.flush() is True

    assert writer_seconds < 0.5  # 2,001 calls: nothing waited for the dead Redis
    assert sum("cannot write to Redis" in r.message for r in caplog.records) == 1  # logged once
    reader = registries("reader:2")
    found = {s.connection_id for s in reader.for_credentials(["tok1"])["tok1"]}
    assert found == {f"during{i}" for i in range(2000)}  # "early" closed during the outage: gone


@redis_only
def test_an_overflowing_queue_is_dropped_and_rewritten_from_memory(registries):
    a = registries("host-a:1", max_pending=10)
    a.flush()  # the first flush is a full rewrite; later changes are queued
    for i in range(25):
        a.opened(socket_of(f"s{i}", f"tok{i % 5}", 1, "host-a:1"))
    for i in range(0, 25, 2):
        a.closed(f"s{i}")

    assert len(a._pending) <= 10
    a.flush()

    reader = registries("reader:2")
    assert {s.connection_id for s in reader.all_sockets()} == {f"s{i}" for i in range(1, 25, 2)}


@redis_only
def test_readers_make_two_round_trips_whatever_the_number_of_credentials(registries):
    a = registries("host-a:1")
    for i in range(50):
        a.opened(socket_of(f"s{i}", f"tok{i}", i, "host-a:1"))
    a.flush()
    reader = registries("reader:2")
    calls = []
    original = reader.client.pipeline

    def counting_pipeline(*args, **kwargs):
        pipe = original(*args, **kwargs)
        execute = pipe.execute
        pipe.execute = lambda *a, **k: calls.append(len(pipe)) or execute(*a, **k)
        return pipe

    reader.client.pipeline = counting_pipeline
    counts = {
        cid: len(found) for cid, found in reader.for_credentials([f"tok{i}" for i in range(100)]).items()
    }

    assert sum(counts.values()) == 50 and counts["tok7"] == 1 and counts["tok77"] == 0
    assert len(calls) == 2


@redis_only
def test_a_restarted_process_with_the_same_name_replaces_the_old_entries(registries):
    old = registries("host-a:1")
    old.opened(socket_of("old1", "tok1", 1, "host-a:1"))
    old.flush()
    old.stop(forget=False)

    new = registries("host-a:1")
    new.opened(socket_of("new1", "tok1", 1, "host-a:1"))
    new.flush()

    assert [s.connection_id for s in new.for_credentials(["tok1"])["tok1"]] == ["new1"]


@redis_only
def test_with_redis_the_module_uses_the_shared_registry(settings):
    presence.use_registry(None)
    try:
        assert isinstance(presence.registry(), RedisRegistry)
    finally:
        presence.use_registry(None)
