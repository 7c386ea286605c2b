"""Django's WSGI and ASGI handlers with a lean middleware chain for the bearer API.

Django has no per-URL middleware: every request pays for every entry of ``MIDDLEWARE``. The
admin needs sessions, CSRF, authentication and messages; the bearer API under ``/api/`` needs
none of them (``native_api.auth.bearer_required`` attaches ``request.user`` itself). So each
entry point holds two fully built Django handlers and picks one by path prefix:

- ``/api/…`` → ``NATIVE_API_MIDDLEWARE`` (security headers, JSON errors, host check, framing:
  all async-capable and run inline, see ``config.lean_middleware``);
- everything else (``/admin/``, static files) → ``MIDDLEWARE``, Django's usual list, which
  ``manage.py check --deploy``, the admin's checks and the test client read.

Under ASGI, Django also runs each request's sync code (signals, sync views) in a fresh
one-thread executor (``asgiref.sync.ThreadSensitiveContext``): a new thread per request, plus
one more that joins it, and a database connection that dies with that thread. Here every
request leases one of ``NATIVE_HTTP_THREADS`` long-lived one-thread executors for its whole
life instead (asgiref >= 3.10's ``ThreadSensitiveContext(executor=…)``): no thread is created
per request, the thread's persistent database connection is reused, and at most that many
requests run sync code at once in this process (the rest wait on the event loop).
"""

import asyncio
import contextlib
from concurrent.futures import ThreadPoolExecutor

from asgiref.sync import ThreadSensitiveContext, sync_to_async
from django.conf import settings
from django.core import signals
from django.core.exceptions import RequestAborted
from django.core.handlers.asgi import ASGIHandler, get_script_prefix
from django.core.handlers.base import BaseHandler
from django.core.handlers.wsgi import WSGIHandler
from django.urls import set_script_prefix

API_PREFIX = "/api/"


def is_api_path(path_info: str) -> bool:
    return path_info.startswith(API_PREFIX)


@contextlib.contextmanager
def _middleware_list(paths: list[str]):
    """Let Django's own ``load_middleware`` build a chain from another list.

    ``BaseHandler.load_middleware`` reads ``settings.MIDDLEWARE`` and nothing else; this runs
    once per handler at start-up, before any request, so swapping the value around it is safe.
    Reusing Django's builder keeps its sync/async adaptation and MiddlewareNotUsed handling.
    """
    original = settings.MIDDLEWARE
    settings.MIDDLEWARE = list(paths)
    try:
        yield
    finally:
        settings.MIDDLEWARE = original


class _ApiChainMixin:
    def load_middleware(self, is_async=False):
        with _middleware_list(settings.NATIVE_API_MIDDLEWARE):
            super().load_middleware(is_async)


class ApiWSGIHandler(_ApiChainMixin, WSGIHandler):
    """WSGIHandler whose chain is NATIVE_API_MIDDLEWARE."""


class PathDispatchWSGI:
    """The WSGI application: /api/ to the lean handler, the rest to Django's usual one."""

    def __init__(self):
        self.site = WSGIHandler()
        self.api = ApiWSGIHandler()

    def __call__(self, environ, start_response):
        handler = self.api if is_api_path(environ.get("PATH_INFO", "")) else self.site
        return handler(environ, start_response)


class SyncThreads:
    """``size`` one-thread executors, leased to one request at a time (most recently used first,
    so a quiet process keeps using the same few threads and database connections)."""

    def __init__(self, size: int):
        self.size = size
        self._free: asyncio.LifoQueue | None = None
        self._executors: list[ThreadPoolExecutor] = []

    @contextlib.asynccontextmanager
    async def lease(self):
        if self._free is None:  # created on the server's loop, at its first request
            self._free = asyncio.LifoQueue()
            for index in range(self.size):
                executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix=f"http-sync-{index}")
                self._executors.append(executor)
                self._free.put_nowait(executor)
        executor = await self._free.get()
        try:
            yield executor
        finally:
            self._free.put_nowait(executor)


class LeasedThreadASGIHandler(ASGIHandler):
    """ASGIHandler that runs a request's sync code on a leased long-lived thread."""

    def __init__(self, threads: SyncThreads):
        super().__init__()
        self.threads = threads

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http":
            raise ValueError(f"Django can only handle ASGI/HTTP connections, not {scope['type']}.")
        async with self.threads.lease() as executor, ThreadSensitiveContext(executor=executor):
            await self.handle(scope, receive, send)


class ApiASGIHandler(_ApiChainMixin, LeasedThreadASGIHandler):
    """/api/ under ASGI: the request's whole sync part in one hop to its leased thread.

    Django's ASGIHandler crosses to the request's thread three times for a sync view: to send
    ``request_started`` (its receivers are sync), to run the view, and to close the response
    (``request_finished``); and it starts two tasks per request to notice a client that leaves
    while an async view runs. The API's views are sync and quick, and their chain runs inline
    (config.lean_middleware), so here the body is read on the event loop, then one hop sends
    ``request_started``, builds the request, runs the chain in sync mode (WSGI's way, same
    middleware, same view) and closes the response, and the loop writes it out. A streaming
    response is closed after it is sent, as Django does; an async view (health) runs under
    the sync chain through ``async_to_sync``, on this process's loop.
    """

    def __init__(self, threads: SyncThreads):
        super().__init__(threads)
        self._sync_handler = _SyncApiHandler()

    async def handle(self, scope, receive, send):
        try:
            body_file = await self.read_body(receive)
        except RequestAborted:
            return
        set_script_prefix(get_script_prefix(scope))
        try:
            response = await sync_to_async(self._respond, thread_sensitive=True)(scope, body_file)
            await self.send_response(response, send)
            if response.streaming:
                await sync_to_async(response.close, thread_sensitive=True)()
        finally:
            body_file.close()

    def _respond(self, scope, body_file):
        signals.request_started.send(sender=self.__class__, scope=scope)
        request, response = self.create_request(scope, body_file)
        if request is not None:
            response = self._sync_handler.get_response(request)
        if not response.streaming:
            response.close()  # request_finished: the body is already rendered
        return response


class _SyncApiHandler(_ApiChainMixin, BaseHandler):
    """NATIVE_API_MIDDLEWARE built for sync mode, as the WSGI handler builds it."""

    def __init__(self):
        super().__init__()
        self.load_middleware(is_async=False)


class PathDispatchASGI:
    """The ASGI HTTP application: /api/ to the lean handler, the rest to Django's usual one,
    both on the same leased threads."""

    def __init__(self, threads: int):
        pool = SyncThreads(threads)
        self.site = LeasedThreadASGIHandler(pool)
        self.api = ApiASGIHandler(pool)

    async def __call__(self, scope, receive, send):
        path, root = scope.get("path", ""), scope.get("root_path", "")
        if root and path.startswith(root):
            path = path[len(root) :]
        handler = self.api if is_api_path(path) else self.site
        await handler(scope, receive, send)
