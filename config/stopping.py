"""The ASGI side of a clean stop: install the signal handlers (foundation.shutdown) on the first
call a real server hands the application, count in-flight HTTP requests, and refuse new work
once the process is stopping (HTTP 503 ``Connection: close``, websockets 1012 ``restart``), so a
load balancer or client retries elsewhere."""

from foundation.shutdown import coordinator
from native_api.errors import error_response


def guarded(app):
    """Wrap the ASGI application: install the handlers on the first real call, count in-flight
    HTTP requests, and refuse new work once stopping."""

    async def application(scope, receive, send):
        kind = scope["type"]
        if kind == "lifespan":
            return await app(scope, receive, send)
        if not coordinator.installed and "server" in scope:
            coordinator.install()
        if coordinator.stopping:
            return await _refuse(kind, receive, send)
        if kind != "http" or not coordinator.installed:
            return await app(scope, receive, send)
        coordinator.request_started()
        try:
            return await app(scope, receive, send)
        finally:
            coordinator.request_finished()

    return application


async def _refuse(kind: str, receive, send) -> None:
    if kind == "websocket":
        await receive()  # websocket.connect
        await send({"type": "websocket.accept"})
        await send({"type": "websocket.close", "code": 1012, "reason": "restart"})
        return
    response = error_response(503, "The server is restarting; retry.", retry_after=1)
    headers = [(b"content-type", b"application/json"), (b"connection", b"close"), (b"retry-after", b"1")]
    await send({"type": "http.response.start", "status": 503, "headers": headers})
    await send({"type": "http.response.body", "body": response.content})
