"""Makes every error under /api/ a JSON error of API.md: never Django's HTML pages."""

import logging

from django.core.exceptions import PermissionDenied, RequestDataTooBig
from django.http import Http404

from native_api.errors import UNAVAILABLE_ERRORS, ApiError, error_response

logger = logging.getLogger("native_api")

MAX_BODY = 64 * 1024


class ApiErrorMiddleware:
    def __init__(self, get_response):
        self.get_response = get_response

    def __call__(self, request):
        if not request.path.startswith("/api/"):
            return self.get_response(request)
        if _declared_length(request) > MAX_BODY:
            return error_response(413)
        response = self.get_response(request)
        if response.status_code >= 400 and not response.get("Content-Type", "").startswith(
            "application/json"
        ):
            original, response = response, error_response(response.status_code)
            # Headers inner middleware already set (X-Frame-Options) must survive the swap.
            for header in ("Allow", "X-Frame-Options"):
                if header in original:
                    response[header] = original[header]
        return response

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
