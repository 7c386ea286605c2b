"""The cluster of deploy/ on this machine, and the short forms of drills 1 and 3 against it.

A real cluster in network namespaces (deploy/cluster.py: nginx, three app hosts with gunicorn
and daphne, Redis with a replica and three Sentinels, PostgreSQL), its own processes and
databases: nothing of it is the suite's. The drills run as an operator runs them
(``python -m deploy.drills N``, from the cluster's client namespace, through nginx): clients log
in with real SSH keys, and the checker compares every frame every socket received with each
user's history. Marked ``postgres`` and ``redis``: CI's PostgreSQL + Redis pass runs it (as
root, which network namespaces need); the cluster is torn down on every exit, and the test
checks that nothing of it is left.
"""

import json
import os
import shutil
import subprocess
import sys

import pytest

from deploy import netns, topology
from deploy.cluster import Cluster, pid_alive

pytestmark = [pytest.mark.e2e, pytest.mark.postgres, pytest.mark.redis, pytest.mark.slow]

NAME = f"ci{os.getpid() % 100000}"  # namespaces of its own, beside a developer's cluster


@pytest.fixture(scope="module")
def cluster(request):
    if os.geteuid() != 0:
        pytest.fail("the cluster needs root (network namespaces); CI runs the suite as root")
    cluster = Cluster(NAME, workers=1)  # the venv of this python
    failed_before = request.session.testsfailed
    try:
        cluster.up()
        yield cluster
    finally:
        pids = {pid for ns in topology.namespaces(NAME) for pid in netns.pids(ns)}
        cluster.down()
        assert not [ns for ns in topology.namespaces(NAME) if netns.exists(ns)], "namespaces left"
        assert not [pid for pid in pids if pid_alive(pid)], "processes left"
        if request.session.testsfailed == failed_before:
            shutil.rmtree(cluster.run_dir, ignore_errors=True)  # kept when a drill failed: its logs
        else:
            print(f"the cluster's logs and the drills' frames: {cluster.run_dir}")


def drill(cluster: Cluster, number: int, tmp_path) -> dict:
    report_path = tmp_path / f"drill-{number}.json"
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "deploy.drills",
            str(number),
            "--cluster",
            cluster.name,
            "--json",
            str(report_path),
        ],
        cwd=os.path.dirname(os.path.dirname(os.path.abspath(__file__))),
        capture_output=True,
        text=True,
        timeout=200,
    )
    print(result.stdout[-6000:], result.stderr[-3000:])
    assert report_path.exists(), f"drill {number} wrote no report (exit {result.returncode})"
    return json.loads(report_path.read_text())


def assert_nothing_lost_duplicated_or_leaked(report: dict) -> None:
    verdict = report["verdict"]
    assert verdict["delivered"] > 1000, verdict  # the load did happen
    for what in ("lost", "duplicated", "out_of_order", "leaked", "lost_writes", "duplicate_writes"):
        assert verdict[what] == 0, (what, verdict["examples"])
    assert verdict["unacked_posts"] == 0 and verdict["unexpected"] == 0, verdict["examples"]
    assert report["contract"] == [], report["contract"]
    assert report["passed"]


@pytest.mark.timeout(300)
def test_killing_the_redis_primary_under_load_loses_nothing_and_sentinel_promotes_the_replica(
    cluster, tmp_path
):
    before, _ = cluster.primary_of("native")
    report = drill(cluster, 1, tmp_path)
    assert_nothing_lost_duplicated_or_leaked(report)
    assert report["fault"]["killed"].startswith(before.name)
    assert not report["fault"]["promoted"].startswith(before.name)
    assert report["verdict"]["closes"].get("4401") == 1  # the revoked subscriber, and only it


@pytest.mark.timeout(300)
def test_a_rolling_restart_under_load_closes_sockets_1012_and_loses_nothing(cluster, tmp_path):
    report = drill(cluster, 3, tmp_path)
    assert_nothing_lost_duplicated_or_leaked(report)
    hosts = report["fault"]["hosts"]
    assert [h["host"] for h in hosts] == [h.name for h in topology.APPS]
    assert sum(h["sockets"] for h in hosts) > 0
    for host in hosts:
        assert host["closed_1012"] == host["sockets"], host
        assert max(host["stop_seconds"].values()) <= 10, host
