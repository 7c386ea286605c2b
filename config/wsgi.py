"""The WSGI entry point: every HTTP endpoint (/api/native/*, /admin/, static files), for gunicorn.

The recommended production layout serves HTTP here (``gunicorn config.wsgi:application``: Django
is several times faster under WSGI than under ASGI on the same core) and websockets through
``config.asgi`` under daphne or uvicorn, with a reverse proxy routing ``/api/ws/`` to the latter
(docs/operations.md). gunicorn reads ``gunicorn.conf.py`` from the working directory, which
bounds its stop on SIGTERM. Requests under /api/ skip the admin's middleware
(config/handlers.py); static files are served by Django's staticfiles view only with DEBUG on,
as under ASGI: in production the proxy serves STATIC_ROOT (``collectstatic``).
"""

import os

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "config.settings")

import django  # noqa: E402

django.setup(set_prefix=False)

from config.handlers import PathDispatchWSGI  # noqa: E402
from foundation.db_health import throttle_request_health_checks  # noqa: E402

throttle_request_health_checks()  # SELECT 1 at most once a second per connection, not per request

# No background purge thread here: the ASGI processes of the layout run it (config/asgi.py), or
# ``manage.py purge_tokens --loop`` does; a gunicorn worker stays a plain request loop.
application = PathDispatchWSGI()
