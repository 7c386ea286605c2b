"""Where websocket connects do their database work.

A connect verifies its credential in one thread hop. Those hops run on a small pool of their
own, not on the event loop's default executor: its threads come and go with the loop, and a
thread that goes takes its open database connection with it (one per test in the suite, which
exhausted the PostgreSQL pool), while these stay and keep theirs. They also keep a connect
storm from queueing behind every socket's frame work on channels' single sync thread.
"""

from concurrent.futures import ThreadPoolExecutor

from foundation.db_health import DatabaseSyncToAsync

ADMISSION_THREADS = 4
_admission = ThreadPoolExecutor(max_workers=ADMISSION_THREADS, thread_name_prefix="ws-admit")


def in_admission_thread(func):
    """``func`` as a coroutine function run on the admission pool (connections cleaned up as
    channels' database_sync_to_async does, the health check throttled: foundation.db_health)."""
    return DatabaseSyncToAsync(func, thread_sensitive=False, executor=_admission)
