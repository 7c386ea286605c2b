"""Client processes: the load generator runs in several forked processes, never in the server's.

``run_clients`` forks one process per job, lets each prepare (open connections), starts them
together through a barrier, and collects each job's result and its own CPU time. Every wait
has a deadline; a process that overruns is terminated and the run fails loudly instead of
hanging.
"""

import contextlib
import ctypes
import multiprocessing
import os
import resource
import signal
import time
import traceback
from dataclasses import dataclass

_CTX = multiprocessing.get_context("fork")
_PR_SET_PDEATHSIG = 1


class BenchError(RuntimeError):
    """A scenario could not complete (a server died, a client timed out, a command failed)."""


def die_with_parent() -> None:
    """Ask the kernel to SIGTERM this process when the bench process dies, even by SIGKILL."""
    with contextlib.suppress(OSError):
        ctypes.CDLL("libc.so.6", use_errno=True).prctl(_PR_SET_PDEATHSIG, signal.SIGTERM)


def raise_fd_limit() -> int:
    """Raise RLIMIT_NOFILE to the hard limit (10,000 sockets need it); returns the new soft limit."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft < hard:
        resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    return resource.getrlimit(resource.RLIMIT_NOFILE)[0]


def cpu_seconds() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


@dataclass
class Gate:
    """Handed to each job: ``ready()`` once prepared, then the job runs its load."""

    barriers: list
    timeout: float
    release: object

    def ready(self) -> float:
        """Wait until every job is prepared; returns the common start time (time.monotonic)."""
        return self.stage(0)

    def stage(self, index: int) -> float:
        """Meet the parent and the other jobs at barrier ``index`` (multi-step scenarios)."""
        self.barriers[index].wait(self.timeout)
        return time.monotonic()

    def wait_release(self) -> None:
        """For jobs that hold connections open until the parent has measured (memory)."""
        if not self.release.wait(self.timeout):
            raise BenchError("the parent never released the clients")


def _child(conn, job, args, gate):
    die_with_parent()
    raise_fd_limit()
    try:
        cpu_start = cpu_seconds()
        result = job(gate, *args)
        conn.send(("ok", result, cpu_seconds() - cpu_start))
    except BaseException as exc:  # report everything to the parent, then exit
        conn.send(("error", f"{type(exc).__name__}: {exc}\n{traceback.format_exc(limit=5)}", 0.0))
        for barrier in gate.barriers:
            barrier.abort()  # the parent stops waiting at once instead of at its deadline
    finally:
        conn.close()


class Clients:
    """Forked client jobs. Use as a context manager: stragglers are killed on exit."""

    def __init__(self, job, args_list, *, timeout: float, stages: int = 1):
        self.timeout = timeout
        self.barriers = [_CTX.Barrier(len(args_list) + 1) for _ in range(stages)]
        self.release = _CTX.Event()
        gate = Gate(self.barriers, timeout, self.release)
        self.procs = []
        for args in args_list:
            parent_end, child_end = _CTX.Pipe(duplex=False)
            proc = _CTX.Process(target=_child, args=(child_end, job, args, gate), daemon=True)
            proc.start()
            child_end.close()
            self.procs.append((proc, parent_end))

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.kill()

    def start(self) -> float:
        """Wait for every job to be ready, then let them all go; returns the start time."""
        return self.stage(0)

    def stage(self, index: int) -> float:
        try:
            self.barriers[index].wait(self.timeout)
        except Exception:
            errors = self.early_errors()
            raise BenchError(
                f"clients did not reach step {index} within {self.timeout:.0f} s: {errors}"
            ) from None
        return time.monotonic()

    def let_go(self) -> None:
        self.release.set()

    def results(self) -> list[tuple[object, float]]:
        """[(result, client CPU seconds)] for each job; raises BenchError on any failure."""
        deadline = time.monotonic() + self.timeout
        out = []
        for _proc, conn in self.procs:
            remaining = max(0.1, deadline - time.monotonic())
            if not conn.poll(remaining):
                self.kill()
                raise BenchError(f"a client process did not finish within {self.timeout:.0f} s")
            status, value, cpu = conn.recv()
            if status != "ok":
                self.kill()
                raise BenchError(f"a client process failed: {value}")
            out.append((value, cpu))
        for proc, _ in self.procs:
            proc.join(5)
        return out

    def early_errors(self) -> str:
        for _, conn in self.procs:
            if conn.poll(1.0):
                status, value, _ = conn.recv()
                if status != "ok":
                    return value
        return "no client reported an error"

    def kill(self) -> None:
        for barrier in self.barriers:
            barrier.abort()
        self.release.set()
        for proc, conn in self.procs:
            if proc.is_alive():
                proc.join(0.5)
            if proc.is_alive():
                proc.terminate()
                proc.join(3)
            if proc.is_alive():
                os.kill(proc.pid, signal.SIGKILL)
                proc.join(1)
            conn.close()


def report_queue():
    """A queue the client jobs can report through before they finish (multi-step scenarios)."""
    return _CTX.Queue()


def run_clients(job, args_list, *, timeout: float):
    """Run ``job(gate, *args)`` in one process per args; returns (start time, [(result, cpu)])."""
    with Clients(job, args_list, timeout=timeout) as clients:
        started = clients.start()
        return started, clients.results()


def thread_cpu(pid: int) -> dict[int, float]:
    """CPU seconds so far of each thread of ``pid``, by thread id (exact, from /proc)."""
    import psutil

    return {t.id: t.user_time + t.system_time for t in psutil.Process(pid).threads()}
