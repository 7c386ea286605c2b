"""``manage.py purge_tokens``: delete dead credentials and forget old client IPs, once or forever."""

import signal

from django.conf import settings
from django.core.management.base import BaseCommand, CommandError

from foundation import metrics
from tokens.purge import DEFAULT_BATCH_SIZE, purge
from tokens.purge_lock import BUSY_MESSAGE, purge_lock
from tokens.purge_loop import PurgeLoop


def _positive_int(text: str) -> int:
    value = int(text)
    if value < 1:
        raise ValueError(text)
    return value


def _positive_float(text: str) -> float:
    value = float(text)
    if not value > 0:
        raise ValueError(text)
    return value


class Command(BaseCommand):
    help = (
        "Delete expired/revoked native tokens (after NATIVE_PURGE_GRACE seconds), expired or used "
        "websocket tickets and login nonces, deny-list entries whose token has expired, and clear "
        "the IP address and user agent of tokens older than NATIVE_IP_RETENTION_DAYS. Only one "
        "purger runs at a time; when another holds the lock this run skips and exits 0. "
        "See docs/operations-purging.md."
    )

    def add_arguments(self, parser):
        parser.add_argument("--loop", action="store_true", help="repeat forever; stop with SIGTERM or Ctrl-C")
        parser.add_argument(
            "--interval",
            type=_positive_float,
            default=None,
            help="seconds between runs with --loop (default NATIVE_PURGE_INTERVAL, or 3600 when that is 0)",
        )
        parser.add_argument(
            "--batch-size",
            type=_positive_int,
            default=DEFAULT_BATCH_SIZE,
            help=f"rows per transaction (default {DEFAULT_BATCH_SIZE})",
        )
        parser.add_argument("--dry-run", action="store_true", help="count what would go, change nothing")

    def handle(self, *args, loop, interval, batch_size, dry_run, **options):
        if loop and dry_run:
            raise CommandError("--dry-run counts once; it cannot be combined with --loop")
        if interval is not None and not loop:
            raise CommandError("--interval only makes sense with --loop")
        if dry_run:
            self._dry_run(batch_size)
        elif loop:
            self._loop(interval or settings.NATIVE_PURGE_INTERVAL or 3600, batch_size)
        else:
            self._once(batch_size)

    def _say(self, line: str) -> None:
        self.stdout.write(line)
        self.stdout.flush()

    def _dry_run(self, batch_size: int) -> None:
        try:
            report = purge(batch_size=batch_size, dry_run=True)
        except Exception as exc:
            raise CommandError(f"purge_tokens failed: {type(exc).__name__}: {exc}") from exc
        for line in report.lines():
            self._say(line)

    def _once(self, batch_size: int) -> None:
        try:
            with purge_lock() as lock:
                if lock is None:
                    # Not a failure: runs overlapping (cron, a sidecar, the servers' own loop)
                    # is expected, and the other runner does the work.
                    metrics.purge_not_run("skipped")
                    self._say(BUSY_MESSAGE)
                    return
                report = purge(batch_size=batch_size, after_batch=lock.refresh)
        except Exception as exc:
            raise CommandError(f"purge_tokens failed: {type(exc).__name__}: {exc}") from exc
        for line in report.lines():
            self._say(line)

    def _loop(self, interval: float, batch_size: int) -> None:
        runner = PurgeLoop(interval=interval, batch_size=batch_size, say=self._say)
        previous = {sig: signal.signal(sig, lambda *_: runner.request_stop()) for sig in _STOP_SIGNALS}
        self._say(f"purge_tokens: purging every {interval:g} s (batches of {batch_size}); SIGTERM stops")
        try:
            runner.run()
        finally:
            for sig, handler in previous.items():
                signal.signal(sig, handler)
        self._say("purge_tokens: stopped")


_STOP_SIGNALS = (signal.SIGTERM, signal.SIGINT)
