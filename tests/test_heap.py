"""live.heap: long-lived objects frozen out of the garbage collector's walk, closed sockets that
leave nothing frozen behind, and the periodic thaw that only runs when it is short."""

import asyncio
import gc
import json
import time
import urllib.request

import pytest
from asgiref.sync import sync_to_async
from prometheus_client.parser import text_string_to_metric_families
from websockets.asyncio.client import connect as ws_connect

from foundation import metrics
from live import heap
from tests.conftest import bearer


@pytest.fixture
def thawed():
    """These tests freeze the test process's heap: give it back to the collector after."""
    yield
    gc.unfreeze()


class Cycle:
    def __init__(self):
        self.me = self


def test_freeze_takes_what_survived_out_of_the_walk_and_refcounting_still_frees(thawed):
    keeper = heap.Heap()
    survivor = [object() for _ in range(10)]
    keeper.freeze()
    frozen = gc.get_freeze_count()
    assert frozen > 0
    assert any(obj is survivor for obj in gc.get_objects()) is False  # frozen: not walked
    del survivor  # no cycle: reference counting frees it, frozen or not
    assert gc.get_freeze_count() == frozen - 1


def test_a_cycle_frozen_is_kept_until_a_thaw(thawed):
    keeper = heap.Heap()
    cycle = Cycle()
    keeper.freeze()
    frozen = gc.get_freeze_count()
    del cycle
    gc.collect()
    assert gc.get_freeze_count() == frozen  # the collector does not see it
    keeper.thaw()
    assert not any(isinstance(obj, Cycle) for obj in gc.get_objects())
    assert keeper.per_object > 0


def test_maintain_thaws_every_interval_when_the_collection_would_be_short(thawed):
    now = [0.0]
    keeper = heap.Heap(clock=lambda: now[0])
    keeper.last_thaw = 0.0  # its first turn is at a random point of the interval: here, now
    keeper.per_object = 0.0  # as if the heap were small (this test process's is not)
    cycle = Cycle()
    keeper.freeze()
    del cycle
    now[0] = heap.THAW_EVERY - 1
    keeper.maintain(0)
    assert sum(isinstance(obj, Cycle) for obj in gc.get_objects() + _frozen_cycles()) == 1
    now[0] = heap.THAW_EVERY + 1
    keeper.maintain(0)
    assert not _frozen_cycles() and not any(isinstance(obj, Cycle) for obj in gc.get_objects())
    assert keeper.thaws_refused == 0


def test_maintain_refuses_a_thaw_that_would_stop_the_process_too_long(thawed, caplog, monkeypatch):
    now = [0.0]
    keeper = heap.Heap(clock=lambda: now[0])
    keeper.last_thaw = 0.0  # its first turn is at a random point of the interval: here, now
    cycle = Cycle()
    keeper.freeze()
    del cycle
    keeper.per_object = 2 * heap.THAW_BUDGET / gc.get_freeze_count()  # as if the heap were huge
    now[0] = heap.THAW_EVERY + 1
    walks = []
    count = gc.get_freeze_count
    monkeypatch.setattr(gc, "get_freeze_count", lambda: walks.append(1) or count())
    keeper.maintain(0)
    monkeypatch.undo()
    assert keeper.thaws_refused == 1
    assert len(walks) == 1  # the frozen list is walked once per turn (165 ms at 10,000 sockets)
    assert len(_frozen_cycles()) == 1  # still frozen: no full collection ran
    assert "not thawing" in caplog.text


def test_processes_started_together_take_their_thaw_turns_apart():
    turns = {heap.Heap(clock=lambda: 0.0).last_thaw for _ in range(20)}
    assert len(turns) == 20 and all(-heap.THAW_EVERY <= turn <= 0.0 for turn in turns)


def test_the_frozen_count_is_read_again_when_the_sockets_held_moved_by_a_tenth(thawed):
    keeper = heap.Heap()
    keeper.freeze(sockets=100)
    counted = metrics.GC_FROZEN_OBJECTS._value.get()
    kept = [Cycle() for _ in range(1000)]

    keeper.freeze(sockets=109)  # under a tenth more: the walk of the frozen list is spared
    assert metrics.GC_FROZEN_OBJECTS._value.get() == counted
    keeper.freeze(sockets=110)
    assert metrics.GC_FROZEN_OBJECTS._value.get() >= counted + 1000
    keeper.freeze(sockets=99)  # a tenth fewer
    assert keeper.counted_at == 99
    del kept


def _frozen_cycles() -> list:
    gc.unfreeze()
    try:
        return [obj for obj in gc.get_objects() if isinstance(obj, Cycle)]
    finally:
        gc.freeze()


def test_collections_are_recorded_without_touching_a_lock_and_exported():
    heap._watch_pauses()
    heap.export_pauses()
    gc.collect()
    assert heap._pauses and heap._pauses[-1][0] == 2
    assert heap.export_pauses() >= 0.0
    assert heap._pauses == []


# --- a real daphne ---------------------------------------------------------------------------


def frozen_objects(proc) -> float:
    with urllib.request.urlopen(f"{proc.url}/metrics", timeout=10) as response:
        text = response.read().decode()
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            if sample.name == "native_gc_frozen_objects":
                return sample.value
    raise AssertionError("native_gc_frozen_objects is not exported")


@pytest.mark.django_db(transaction=True)
def test_a_real_daphne_freezes_its_sockets_and_a_closed_socket_leaves_nothing_frozen(
    server_factory, alice, general
):
    """300 subscribed sockets are frozen within a maintenance interval; once they end (150 closed
    by their client, 150 closed 4401 by a revocation), the frozen count comes back down: their
    cycles were cut, nothing waits for a collection that would never come. Without
    config.daphne_cycles or the consumer's cuts, every closed socket would stay frozen."""
    from tokens.login import issue_token
    from tokens.models import NativeToken
    from tokens.revocation import revoke_native_tokens

    proc = server_factory(name="heap")
    kept, doomed_token = bearer(alice), issue_token(alice)
    revoked = doomed_token.raw
    settle = 5.0 + 3.0  # one maintenance interval (live.hub.MAINTENANCE_EVERY) and some

    async def frozen_once(done) -> float:
        """The frozen count once ``done(count)`` holds, or after ``settle`` seconds at most."""
        deadline = time.monotonic() + settle
        while True:
            count = frozen_objects(proc)
            if done(count) or time.monotonic() > deadline:
                return count
            await asyncio.sleep(0.5)

    async def open_one(token):
        ws = await ws_connect(proc.ws_url, additional_headers={"Authorization": f"Bearer {token}"})
        assert json.loads(await ws.recv())["type"] == "hello"
        await ws.send(json.dumps({"type": "subscribe", "room": "general"}))
        assert json.loads(await ws.recv())["type"] == "subscribed"
        return ws

    async def run():
        first = await open_one(kept)  # the hub starts with the first socket, and freezes
        await asyncio.sleep(1.0)
        before = frozen_objects(proc)
        closing = [await open_one(kept) for _ in range(150)]
        doomed = [await open_one(revoked) for _ in range(150)]
        held = await frozen_once(lambda count: count - before >= 300 * 50)
        await asyncio.gather(*(ws.close() for ws in closing))
        await sync_to_async(revoke_native_tokens)(NativeToken.objects.filter(pk=doomed_token.token.pk))
        for ws in doomed:
            await ws.wait_closed()
            assert ws.close_code == 4401
        after = await frozen_once(lambda count: count - before <= (held - before) * 0.1)
        await first.close()
        return before, held, after

    before, held, after = asyncio.run(run())
    assert held - before >= 300 * 50, (before, held, after)  # the open sockets were frozen
    assert after - before <= (held - before) * 0.1, (before, held, after)  # and freed on close
    assert "Traceback" not in proc.log()
