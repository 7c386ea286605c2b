"""A lean HTTP/1.1 keep-alive load generator (asyncio streams), so the client stays cheaper
than the server it measures. Each client process runs ``concurrency`` connections that take
requests from a shared budget until the count or the time runs out.
"""

import asyncio
import collections
import itertools
import time

from bench.procs import BenchError, run_clients
from bench.report import percentile


def get(path: str, port: int, token: str | None = None, method: str = "GET") -> bytes:
    auth = f"Authorization: Bearer {token}\r\n" if token is not None else ""
    return f"{method} {path} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\n{auth}Content-Length: 0\r\n\r\n".encode()


async def read_response(reader) -> tuple[int, bytes, bool]:
    """(status, body, keep-alive) of one response."""
    status_line = await reader.readline()
    if not status_line:
        raise ConnectionError("server closed the connection")
    status = int(status_line.split(b" ", 2)[1])
    length, chunked, keep_alive = None, False, True
    while True:
        line = await reader.readline()
        if line in (b"\r\n", b""):
            break
        name, _, value = line.partition(b":")
        name, value = name.strip().lower(), value.strip().lower()
        if name == b"content-length":
            length = int(value)
        elif name == b"transfer-encoding" and b"chunked" in value:
            chunked = True
        elif name == b"connection" and value == b"close":
            keep_alive = False
    if chunked:
        body = b""
        while True:
            size = int((await reader.readline()).split(b";")[0], 16)
            chunk = await reader.readexactly(size + 2)
            if size == 0:
                break
            body += chunk[:-2]
    elif length is not None:
        body = await reader.readexactly(length)
    else:
        body, keep_alive = await reader.read(), False
    return status, body, keep_alive


async def request_once(port: int, raw: bytes, timeout: float = 10.0) -> tuple[int, bytes]:
    """One request on a fresh connection (for setup steps, not for load)."""
    reader, writer = await asyncio.wait_for(asyncio.open_connection("127.0.0.1", port), timeout)
    try:
        writer.write(raw)
        status, body, _ = await asyncio.wait_for(read_response(reader), timeout)
        return status, body
    finally:
        writer.close()


class Budget:
    def __init__(self, count: int, deadline: float, stop=None):
        self.left, self.deadline, self.stop = count, deadline, stop

    def take(self) -> bool:
        if self.left <= 0 or time.monotonic() >= self.deadline or (self.stop and self.stop.is_set()):
            return False
        self.left -= 1
        return True


async def _connection(port, requests, budget, out, timeout):
    reader = writer = None
    try:
        for raw in requests:
            if not budget.take():
                return
            if writer is None:
                reader, writer = await asyncio.wait_for(asyncio.open_connection("127.0.0.1", port), timeout)
            started = time.monotonic()
            writer.write(raw)
            status, _, keep_alive = await asyncio.wait_for(read_response(reader), timeout)
            done = time.monotonic()
            out["statuses"][status] += 1
            out["samples"].append((started, done - started))
            if not keep_alive:
                writer.close()
                reader = writer = None
    finally:
        if writer is not None:
            writer.close()


def http_job(gate, port, requests, count, duration, concurrency, stop=None, once=False):
    """One client process: returns statuses, (start, latency) samples and its time span.
    ``once``: every request is sent at most once (single-use bodies, such as signed logins)."""

    async def main():
        out = {"statuses": collections.Counter(), "samples": []}
        start = gate.ready()
        budget = Budget(count, start + duration, stop)
        offset = len(requests) // max(1, concurrency)
        shared = iter(requests)  # one iterator for every connection: no request twice
        tasks = [
            _connection(
                port,
                shared if once else itertools.islice(itertools.cycle(requests), i * offset, None),
                budget,
                out,
                10.0,
            )
            for i in range(concurrency)
        ]
        await asyncio.gather(*tasks)
        out["span"] = (start, time.monotonic())
        return out

    return asyncio.run(main())


def http_load(server, requests, *, count, duration, processes=2, concurrency=8, stop=None, once=False):
    """Run an HTTP load on ``server``; returns a dict of throughput, latency and CPU figures.
    ``once``: each request is sent at most once (the processes get disjoint shares of them)."""
    per_process = [
        (
            server.port,
            requests[i::processes] if once else requests,
            count // processes + (1 if i < count % processes else 0),
            duration,
            concurrency,
            stop,
            once,
        )
        for i in range(processes)
    ]
    cpu_before = server.cpu()
    started, results = run_clients(http_job, per_process, timeout=duration + 60)
    server_cpu = server.cpu() - cpu_before
    statuses = collections.Counter()
    samples = []
    for result, _ in results:
        statuses.update(result["statuses"])
        samples.extend(result["samples"])
    if not samples:
        raise BenchError("the HTTP load got no responses")
    finished = max(result["span"][1] for result, _ in results)
    elapsed = max(finished - started, 1e-6)
    latencies = [lat for _, lat in samples]
    return {
        "requests": len(samples),
        "rps": len(samples) / elapsed,
        "p50_ms": percentile(latencies, 50) * 1000,
        "p99_ms": percentile(latencies, 99) * 1000,
        "statuses": dict(statuses),
        "elapsed": elapsed,
        "server_cpu": server_cpu,
        "client_cpu": sum(cpu for _, cpu in results),
        "samples": samples,
    }
