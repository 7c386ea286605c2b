"""Static files (the admin's CSS and JS) from the application itself, under WSGI and ASGI.

WhiteNoise does the serving: the files, their compressed variants, caching headers, ranges,
``If-None-Match``. Two of its middleware's habits cost under ASGI: it is sync-only, and Django
adapts a sync-only middleware with thread hops for *every* request, API calls and health probes
included; and its ``FileResponse`` streams a sync file, which Django's ASGI handler consumes
through a thread hop with a "must consume synchronous iterators" warning for every file. This
wrapper is sync- and async-capable (it adds no hop of its own to requests outside ``STATIC_URL``;
Django still runs the chain in sync mode while a later middleware is sync-only), and under ASGI
it answers with the file read into memory (the admin's largest is ~100 KB) instead of a stream.
Under WSGI (gunicorn, the production HTTP server) it serves exactly as
``whitenoise.middleware.WhiteNoiseMiddleware`` does, streaming through ``wsgi.file_wrapper``.
"""

import logging
from pathlib import Path

from asgiref.sync import iscoroutinefunction, markcoroutinefunction, sync_to_async
from django.conf import settings
from django.core.handlers.asgi import ASGIRequest
from django.http import HttpResponse
from whitenoise.middleware import WhiteNoiseMiddleware
from whitenoise.storage import CompressedManifestStaticFilesStorage

logger = logging.getLogger(__name__)

IN_MEMORY_LIMIT = 4 * 1024 * 1024  # larger files (none in the admin) are streamed as WhiteNoise does


class StaticFilesMiddleware:
    sync_capable = True
    async_capable = True

    def __init__(self, get_response):
        self.get_response = get_response
        self.whitenoise = WhiteNoiseMiddleware(get_response=None, settings=_WhiteNoiseSettings())
        self.prefix = self.whitenoise.static_prefix
        self.is_async = iscoroutinefunction(get_response)
        if self.is_async:
            markcoroutinefunction(self)

    def _find(self, path: str):
        if self.whitenoise.autorefresh:
            return self.whitenoise.find_file(path)  # DEBUG: looks at the disk (finders) each time
        return self.whitenoise.files.get(path)

    def __call__(self, request):
        if self.is_async:
            return self.__acall__(request)
        if request.path_info.startswith(self.prefix):
            if isinstance(request, ASGIRequest):  # sync mode inside an ASGI server
                response = self._serve_in_memory(request)
                if response is not None:
                    return response
            else:
                static_file = self._find(request.path_info)
                if static_file is not None:
                    return self.whitenoise.serve(static_file, request)
        return self.get_response(request)

    async def __acall__(self, request):
        if request.path_info.startswith(self.prefix):
            response = await sync_to_async(self._serve_in_memory, thread_sensitive=False)(request)
            if response is not None:
                return response
        return await self.get_response(request)

    def _serve_in_memory(self, request):
        static_file = self._find(request.path_info)
        if static_file is None:
            return None
        answer = static_file.get_response(request.method, request.META)
        if answer.file is not None and _size(answer.headers) > IN_MEMORY_LIMIT:
            answer.file.close()
            return self.whitenoise.serve(static_file, request)
        body = b""
        if answer.file is not None:
            with answer.file:
                body = answer.file.read()
        response = HttpResponse(body, status=int(answer.status))
        del response["Content-Type"]
        for name, value in answer.headers:
            response[name] = value
        return response


class _WhiteNoiseSettings:
    """Django's settings, minus a STATIC_ROOT that does not exist (yet): in DEBUG the files come
    from the apps (finders) and WhiteNoise would warn about the missing folder at every start;
    without DEBUG, ManifestStorage says once that collectstatic was not run."""

    def __getattr__(self, name):
        value = getattr(settings, name)
        if name == "STATIC_ROOT" and value and not Path(value).is_dir():
            return None
        return value


def _size(headers) -> int:
    for name, value in headers:
        if name.lower() == "content-length":
            return int(value)
    return 0


class ManifestStorage(CompressedManifestStaticFilesStorage):
    """WhiteNoise's hashed, compressed storage, for DEBUG=false.

    Django's manifest storage raises ValueError while rendering ``{% static %}`` for a name that
    is not in the manifest, which turns every admin page into a 500 when ``collectstatic`` was
    not run. Falling back to the plain name gives unstyled pages and one log line saying why.
    """

    manifest_strict = False
    _warned = False

    def stored_name(self, name):
        try:
            return super().stored_name(name)
        except ValueError:
            if not ManifestStorage._warned:
                ManifestStorage._warned = True
                logger.warning(
                    "static file %r is not in STATIC_ROOT (%s): run `manage.py collectstatic --noinput`",
                    name,
                    self.location,
                )
            return name
