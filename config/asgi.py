"""The ASGI entry point: websockets to the native consumer, HTTP to Django.

In production HTTP goes to ``config.wsgi`` under gunicorn and this process serves websockets
(docs/operations.md); the embedded default (``make run``) serves both from here. HTTP requests
under /api/ take the lean middleware chain and every request runs its sync code on a leased
long-lived thread (config/handlers.py). ``stopping.guarded`` makes SIGTERM close websockets
with 1012 and end the process within NATIVE_SHUTDOWN_DEADLINE seconds (foundation/shutdown.py).
"""

import os

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "config.settings")

import django  # noqa: E402

# Django must be set up before anything imports models (the consumer does).
django.setup(set_prefix=False)

from channels.routing import ProtocolTypeRouter  # noqa: E402
from django.conf import settings  # noqa: E402

from config import daphne_compat, stopping  # noqa: E402
from config.handlers import PathDispatchASGI  # noqa: E402
from foundation.db_health import throttle_request_health_checks  # noqa: E402
from native_api.routing import websocket_application  # noqa: E402
from tokens.purge_loop import with_purge_loop  # noqa: E402

daphne_compat.install()
throttle_request_health_checks()  # SELECT 1 at most once a second per connection, not per request
django_asgi_app = PathDispatchASGI(threads=settings.NATIVE_HTTP_THREADS)
# with_purge_loop: the first request a real server hands us starts this process's purge thread.
application = stopping.guarded(
    with_purge_loop(ProtocolTypeRouter({"http": django_asgi_app, "websocket": websocket_application()}))
)
