"""Websocket routing: /api/ws/native behind the origin rule; anything else is refused."""

from urllib.parse import urlparse

from channels.generic.websocket import AsyncWebsocketConsumer
from channels.routing import URLRouter
from channels.security.websocket import OriginValidator
from django.conf import settings
from django.urls import path, re_path

from foundation.env import env_bool
from native_api.consumer import native_socket


class NativeOriginValidator(OriginValidator):
    """ALLOWED_HOSTS origin check that lets native clients (no Origin header) in.

    A browser always sends Origin, so a page on a foreign site is refused, while desktop,
    mobile and terminal clients, which send none, pass. Refusal follows API.md: accept, then
    close with 4403, so clients can tell it apart from a network failure.
    """

    def valid_origin(self, parsed_origin):
        if parsed_origin is None:
            return True
        return self.validate_origin(parsed_origin)

    async def __call__(self, scope, receive, send):
        origin = None
        for name, value in scope.get("headers", []):
            if name == b"origin":
                try:
                    origin = urlparse(value.decode("latin-1"))
                except (UnicodeDecodeError, ValueError):
                    origin = urlparse("invalid://")
        if self.valid_origin(origin):
            return await self.application(scope, receive, send)
        return await OriginRefused()(scope, receive, send)


class OriginRefused(AsyncWebsocketConsumer):
    async def connect(self):
        await self.accept()
        await self.close(code=4403, reason="origin")


class UnknownPath(AsyncWebsocketConsumer):
    async def connect(self):
        await self.close()


def websocket_application():
    allowed = list(settings.ALLOWED_HOSTS) or ["localhost", "127.0.0.1", "[::1]"]
    routes = [path("api/ws/native", native_socket)]
    if env_bool("NATIVE_BENCH_BASELINES", False):  # benchmark baselines (bench/); never in production
        from bench import baselines

        routes += baselines.websocket_routes()
    router = URLRouter([*routes, re_path(r"", UnknownPath.as_asgi())])
    return NativeOriginValidator(router, allowed)
