"""Makes every error under /api/ a JSON error of API.md: never Django's HTML pages.

Sync- and async-capable (STYLE.md item 12): under ASGI the chain stays async, so a request
never hops to a thread and back just to pass through here. ``process_exception`` stays sync,
as Django always runs exception middleware in sync mode (on the request's thread).
"""

import logging

from asgiref.sync import iscoroutinefunction, markcoroutinefunction
from django.core.exceptions import PermissionDenied, RequestDataTooBig
from django.http import Http404

from native_api.errors import UNAVAILABLE_ERRORS, ApiError, error_response

logger = logging.getLogger("native_api")

MAX_BODY = 64 * 1024


class ApiErrorMiddleware:
    sync_capable = True
    async_capable = True

    def __init__(self, get_response):
        self.get_response = get_response
        self.async_mode = iscoroutinefunction(get_response)
        if self.async_mode:
            markcoroutinefunction(self)

    def __call__(self, request):
        if self.async_mode:
            return self.__acall__(request)
        if not request.path.startswith("/api/"):
            return self.get_response(request)
        if _declared_length(request) > MAX_BODY:
            return error_response(413)
        return _as_json_error(self.get_response(request))

    async def __acall__(self, request):
        if not request.path.startswith("/api/"):
            return await self.get_response(request)
        if _declared_length(request) > MAX_BODY:
            return error_response(413)
        return _as_json_error(await self.get_response(request))

    def process_exception(self, request, exception):
        if not request.path.startswith("/api/"):
            return None
        if isinstance(exception, ApiError):
            return error_response(exception.status, exception.detail, retry_after=exception.retry_after)
        if isinstance(exception, RequestDataTooBig):
            return error_response(413)
        if isinstance(exception, Http404):
            return error_response(404)
        if isinstance(exception, PermissionDenied):
            return error_response(403)
        if isinstance(exception, UNAVAILABLE_ERRORS) or _is_cache_error(exception):
            logger.error("dependency unavailable on %s: %s", request.path, type(exception).__name__)
            return error_response(503)
        logger.exception("unhandled error on %s", request.path)
        return error_response(500)


def _as_json_error(response):
    """An error response that is not JSON yet (Django's 404/405/500 pages) in the API's format."""
    if response.status_code < 400 or response.get("Content-Type", "").startswith("application/json"):
        return response
    original, response = response, error_response(response.status_code)
    # Headers inner middleware already set (X-Frame-Options) must survive the swap.
    for header in ("Allow", "X-Frame-Options"):
        if header in original:
            response[header] = original[header]
    return response


def _declared_length(request) -> int:
    try:
        return int(request.META.get("CONTENT_LENGTH") or 0)
    except ValueError:
        return 0


def _is_cache_error(exception) -> bool:
    try:
        import redis
    except ImportError:  # pragma: no cover - redis is a dependency
        return False
    return isinstance(exception, redis.RedisError)
