"""gunicorn settings for ``gunicorn config.wsgi:application`` (read from the working directory).

Only what the contract needs; everything else is gunicorn's default or a command-line flag
(``-w``, ``-b``; docs/operations.md has the production layout).
"""

import os

from gunicorn.glogging import Logger

from native_api.logging import RedactSecretsFilter

wsgi_app = "config.wsgi:application"
# SIGTERM: the arbiter stops accepting, lets each worker finish its current request, and kills
# workers still busy after this many seconds: the process tree is gone within 10 s (API.md).
graceful_timeout = int(os.environ.get("GUNICORN_GRACEFUL_TIMEOUT", "8"))
# gunicorn 27's control socket defaults to one path per user: several gunicorns on one host
# (tests, side-by-side deployments) would take it from each other, and nothing here uses it.
control_socket_disable = True


class RedactingLogger(Logger):
    """gunicorn's own loggers through the app's redaction (native_api.redaction): its access log,
    off by default, prints request lines as clients wrote them, credentials in query strings
    included, and it never reaches Django's logging configuration."""

    def setup(self, cfg):
        super().setup(cfg)
        for log in (self.access_log, self.error_log):
            log.addFilter(RedactSecretsFilter())


logger_class = RedactingLogger


def child_exit(server, worker):
    """With PROMETHEUS_MULTIPROC_DIR (docs/operations-metrics.md), forget a finished worker's
    live gauges at once (the /metrics view also drops those of any process that has died)."""
    if os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
        from prometheus_client import multiprocess

        multiprocess.mark_process_dead(worker.pid)
