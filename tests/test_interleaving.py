"""The interleaving checker (tests/interleaving.py) against real server processes: one daphne on
the embedded default, two on PostgreSQL + Redis with the sockets spread over them.

CI runs a short budget with a fixed seed; a long run, or another seed, on demand:
``INTERLEAVING_OPS=5000 INTERLEAVING_SEED=7 pytest tests/test_interleaving.py``
(``INTERLEAVING_SEED=random`` draws one). A failure prints the seed and the command to replay it.
"""

import os
import random

import pytest

from tests.conftest import ON_REDIS
from tests.interleaving import Run

pytestmark = pytest.mark.e2e

OPS = int(os.environ.get("INTERLEAVING_OPS", "150"))
SEED_SETTING = os.environ.get("INTERLEAVING_SEED", "20261207")


def seed() -> int:
    return random.SystemRandom().randrange(2**32) if SEED_SETTING == "random" else int(SEED_SETTING)


@pytest.fixture
def servers(request, server, server_factory):
    if ON_REDIS:  # production layout: several processes share the database and the layer
        return [server, server_factory(name="interleaving-2")]
    return [server]  # the embedded default is one process


async def test_no_interleaving_breaks_an_invariant(servers):
    logged_before = [len(proc.log()) for proc in servers]
    run = Run(seed(), OPS, servers)
    print(f"interleaving: seed {run.seed}, {OPS} actions over {len(servers)} server process(es)")
    await run.run()
    problems = await run.check()
    kinds = {kind for kind, *_ in run.log}
    frames = sum(len(r["events"]) for d in run.devices for r in d.sockets)
    print(f"interleaving: {len(run.log)} operator changes {sorted(kinds)}, {frames} frames recorded")
    for proc, start in zip(servers, logged_before, strict=True):  # and no server-side crash
        if "Traceback" in proc.log()[start:]:
            problems.append(f"{proc.url} logged an exception:\n{proc.log()[start:][-3000:]}")
    assert problems == [], (
        f"seed {run.seed}: {len(problems)} violation(s); replay with "
        f"INTERLEAVING_SEED={run.seed} INTERLEAVING_OPS={OPS} pytest tests/test_interleaving.py\n"
        + "\n".join(problems[:40])
    )
