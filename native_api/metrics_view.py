"""GET /metrics: the Prometheus text format, for loopback callers or a bearer secret.

Who may read: a caller whose client IP (native_api.client_ip, so trusted proxies count) is a
loopback address and whose request was not relayed by an unknown proxy, or anyone presenting
``Authorization: Bearer <NATIVE_METRICS_TOKEN>`` (compared in constant time). A wrong secret is
refused even from loopback. The figures say how busy the server is and which limits are hit,
which is worth hiding from the internet, but hold no secret.

Dependency health is probed at scrape time (``native_dependency_up``), each probe bounded by
PROBE_TIMEOUT, so the figure is as fresh as the scrape and costs nothing between scrapes.
"""

import glob
import hmac
import os
import re
import time
import uuid
from concurrent.futures import ThreadPoolExecutor
from concurrent.futures import TimeoutError as FutureTimeout

from asgiref.sync import async_to_sync
from django.conf import settings
from django.db import connections
from django.http import HttpResponse
from prometheus_client import REGISTRY, CollectorRegistry, generate_latest
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.exposition import CONTENT_TYPE_PLAIN_0_0_4

import foundation.metrics  # noqa: F401  (declares every metric before the first scrape)
from native_api import client_ip
from native_api.auth import bearer_from_header
from native_api.errors import error_response

PROBE_TIMEOUT = 1.0
RELAY_HEADERS = ("HTTP_X_FORWARDED_FOR", "HTTP_FORWARDED", "HTTP_X_REAL_IP")
_probe_pool = ThreadPoolExecutor(max_workers=3, thread_name_prefix="metrics-probe")


def metrics(request):
    if request.method not in ("GET", "HEAD"):
        response = error_response(405, "Use GET.")
        response["Allow"] = "GET, HEAD"
        return response
    refused = _refusal(request)
    if refused is not None:
        return refused
    # The classic text format (0.0.4): every Prometheus reads it, and our names need nothing newer.
    return HttpResponse(exposition(), content_type=CONTENT_TYPE_PLAIN_0_0_4)


def exposition() -> bytes:
    directory = os.environ.get("PROMETHEUS_MULTIPROC_DIR")
    probes = CollectorRegistry(auto_describe=False)
    probes.register(DependencyCollector())
    probes.register(KrlCollector())
    if not directory:
        return generate_latest(REGISTRY) + generate_latest(probes)
    from prometheus_client import multiprocess

    forget_dead_processes(directory)
    merged = CollectorRegistry(auto_describe=False)
    multiprocess.MultiProcessCollector(merged, path=directory)
    return generate_latest(merged) + generate_latest(probes)


# --- who may read ------------------------------------------------------------------------------


def _refusal(request):
    secret = settings.NATIVE_METRICS_TOKEN
    presented = bearer_from_header(request.META.get("HTTP_AUTHORIZATION"))
    if presented is not None:
        if secret and hmac.compare_digest(presented.encode(), secret.encode()):
            return None
        return _unauthorized("The metrics token is not valid.")
    if _from_loopback(request):
        return None
    if secret:
        return _unauthorized("Metrics need the metrics bearer token from outside loopback.")
    return error_response(403, "Metrics are served to loopback only (NATIVE_METRICS_TOKEN is not set).")


def _unauthorized(detail: str):
    response = error_response(401, detail)
    response["WWW-Authenticate"] = "Bearer"
    return response


def _from_loopback(request) -> bool:
    address = client_ip.parse(client_ip.from_request(request))
    if address is None or not address.is_loopback:
        return False
    # A reverse proxy on this host that is not in NATIVE_TRUSTED_PROXIES relays everyone from
    # 127.0.0.1: a relayed request is not a local one unless a trusted proxy vouched for it.
    relayed = any(request.META.get(header) for header in RELAY_HEADERS)
    if not relayed:
        return True
    peer = client_ip.parse(request.META.get("REMOTE_ADDR"))
    return peer is not None and any(peer in net for net in settings.NATIVE_TRUSTED_PROXIES)


# --- several processes -------------------------------------------------------------------------

_PID_IN_NAME = re.compile(r"_(\d+)\.db$")


def forget_dead_processes(directory: str) -> list[int]:
    """Drop the live gauges (sockets, subscriptions) of processes of this host that are gone.

    gunicorn tells prometheus-client when a worker exits (the ``child_exit`` hook), but a
    daphne or uvicorn process killed with SIGKILL tells no one: without this, its last
    socket count would be added to the total forever. Counters are kept: a dead process's
    requests still happened.
    """
    from prometheus_client import multiprocess

    dead = set()
    for path in glob.glob(os.path.join(directory, "gauge_live*_*.db")):
        match = _PID_IN_NAME.search(path)
        if match and not _running(int(match.group(1))):
            dead.add(int(match.group(1)))
    for pid in dead:
        multiprocess.mark_process_dead(pid, directory)
    return sorted(dead)


def _running(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True  # someone else's process: alive
    return True


# --- dependency health -------------------------------------------------------------------------


def _probe_database():
    try:
        with connections["default"].cursor() as cursor:
            cursor.execute("SELECT 1")
            cursor.fetchone()
    finally:
        connections.close_all()  # this probe thread's connection; a pooled one goes back


def _probe_cache():
    from django.core.cache import cache

    key = f"metrics-probe:{uuid.uuid4().hex}"
    cache.set(key, "ok", 10)
    if cache.get(key) != "ok":
        raise RuntimeError("the cache lost a value")
    cache.delete(key)


def _probe_channel_layer():
    from channels.layers import get_channel_layer

    async def roundtrip():
        layer = get_channel_layer()
        channel = await layer.new_channel()
        await layer.send(channel, {"type": "metrics.probe"})
        if (await layer.receive(channel)).get("type") != "metrics.probe":
            raise RuntimeError("the channel layer returned a foreign message")

    async_to_sync(roundtrip)()


PROBES = {"database": _probe_database, "cache": _probe_cache, "channel_layer": _probe_channel_layer}


def _timed(probe) -> float | None:
    """Seconds the probe took, or None when it failed."""
    started = time.perf_counter()
    try:
        probe()
    except Exception:
        return None
    return time.perf_counter() - started


class DependencyCollector:
    """``native_dependency_up`` and ``native_dependency_probe_seconds``, probed in parallel."""

    def collect(self):
        futures = {name: _probe_pool.submit(_timed, probe) for name, probe in PROBES.items()}
        up = GaugeMetricFamily(
            "native_dependency_up",
            "1 when the dependency answered a probe at scrape time.",
            labels=["dependency"],
        )
        seconds = GaugeMetricFamily(
            "native_dependency_probe_seconds", "How long the scrape-time probe took.", labels=["dependency"]
        )
        deadline = time.perf_counter() + PROBE_TIMEOUT
        for name, future in futures.items():
            try:
                took = future.result(timeout=max(0.0, deadline - time.perf_counter()))
            except FutureTimeout:
                up.add_metric([name], 0.0)
                seconds.add_metric([name], PROBE_TIMEOUT)
                continue
            up.add_metric([name], 0.0 if took is None else 1.0)
            seconds.add_metric([name], PROBE_TIMEOUT if took is None else took)
        yield up
        yield seconds


# --- the KRL in force --------------------------------------------------------------------------


def _read_krl():
    from tokens.krl_store import krl_in_force

    try:
        return krl_in_force()
    finally:
        connections.close_all()  # this probe thread's connection


class KrlCollector:
    """The KRL in force, read from the database at scrape time (every process answers the same):
    ``native_krl_loaded`` (0 when none is), its load time, version and what it revokes, and who
    loaded it from where as the labels of ``native_krl_info``. Nothing when the read fails: the
    dependency probe says why."""

    def collect(self):
        future = _probe_pool.submit(_read_krl)
        try:
            row = future.result(timeout=PROBE_TIMEOUT)
        except Exception:
            return
        loaded = GaugeMetricFamily(
            "native_krl_loaded", "1 when a KRL is in force (manage.py load_krl, admin)."
        )
        loaded.add_metric([], 0 if row is None else 1)
        yield loaded
        if row is None:
            return
        yield GaugeMetricFamily(
            "native_krl_loaded_timestamp_seconds",
            "When the KRL in force was loaded.",
            value=row.loaded_at.timestamp(),
        )
        yield GaugeMetricFamily(
            "native_krl_version",
            "The version number the KRL in force carries.",
            value=float(row.version or 0),
        )
        info = GaugeMetricFamily(
            "native_krl_info",
            "The KRL in force: who loaded it, and from where.",
            labels=["loaded_by", "source"],
        )
        info.add_metric([row.loaded_by, row.source], 1)
        yield info
        entries = GaugeMetricFamily(
            "native_krl_revoked_entries", "What the KRL in force revokes, by kind of entry.", labels=["kind"]
        )
        for kind, count in sorted(row.summary.items()):
            entries.add_metric([kind], count)
        yield entries
