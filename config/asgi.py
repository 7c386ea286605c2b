"""The ASGI entry point: HTTP goes to Django, websockets to the native consumer."""

import os

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "config.settings")

from django.core.asgi import get_asgi_application  # noqa: E402

# Django must be set up before anything imports models (the consumer does).
django_asgi_app = get_asgi_application()

from channels.routing import ProtocolTypeRouter  # noqa: E402

from config import daphne_compat  # noqa: E402
from native_api.routing import websocket_application  # noqa: E402
from tokens.purge_loop import with_purge_loop  # noqa: E402

daphne_compat.install()
# with_purge_loop: the first request a real server hands us starts this process's purge thread.
application = with_purge_loop(
    ProtocolTypeRouter({"http": django_asgi_app, "websocket": websocket_application()})
)
