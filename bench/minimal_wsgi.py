"""The smallest possible Django JSON view, as its own WSGI project: the baseline that
``config.wsgi`` is measured against (``gunicorn bench.minimal_wsgi:application``).

No installed apps, no middleware, no database, no templates: Django's WSGIHandler, the URL
resolver, one view returning ``JsonResponse``. Anything our stack costs on top of it (the
middleware chain, bearer verification, the query, serialisation) is what the ratio shows.
"""

import django
from django.conf import settings
from django.core.handlers.wsgi import WSGIHandler
from django.http import JsonResponse
from django.urls import path


def plain(request):
    return JsonResponse({"ok": True})


urlpatterns = [path("bench/plain", plain)]

settings.configure(
    DEBUG=False,
    SECRET_KEY="bench-minimal-wsgi-baseline-not-a-secret",
    ALLOWED_HOSTS=["127.0.0.1", "localhost"],
    ROOT_URLCONF=__name__,
    MIDDLEWARE=[],
    INSTALLED_APPS=[],
    DATABASES={},
    USE_TZ=True,
)
django.setup(set_prefix=False)
application = WSGIHandler()
