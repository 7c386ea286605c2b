"""The JSON error format of API.md: ``{"error": code, "detail": sentence}``."""

import msgspec
from django.db import InterfaceError, OperationalError
from django.http import HttpResponse

from native_api.schemas.http import Error
from tokens.exceptions import CredentialCheckUnavailable

# Errors that mean "a dependency is down, retry later" (503 / error frame "unavailable"). Other
# database errors (an IntegrityError, say) are bugs and must not tell clients to retry.
UNAVAILABLE_ERRORS = (OperationalError, InterfaceError, CredentialCheckUnavailable)

CODES = {
    400: "invalid_request",
    401: "unauthorized",
    403: "forbidden",
    404: "not_found",
    405: "method_not_allowed",
    413: "payload_too_large",
    429: "rate_limited",
    500: "internal_error",
    503: "unavailable",
}

DEFAULT_DETAIL = {
    400: "The request is malformed.",
    401: "A valid credential is required.",
    403: "You are not allowed to do this.",
    404: "Not found.",
    405: "This method is not allowed here.",
    413: "The request body is larger than 64 KiB.",
    429: "Too many requests; retry later.",
    500: "The server failed to handle this request.",
    503: "A service this request needs is unavailable; retry later.",
}

# RFC 7235 requires a challenge on every 401; RFC 6750 names the scheme. No error="…" parameter:
# one 401 answers both "no credential" and "bad credential", and the body's detail says which.
WWW_AUTHENTICATE = "Bearer"

_encode = msgspec.json.Encoder().encode


class ApiError(Exception):
    """Raised by views; turned into the JSON error response by ApiErrorMiddleware."""

    def __init__(self, status: int, detail: str | None = None, *, retry_after: int | None = None):
        super().__init__(detail or DEFAULT_DETAIL[status])
        self.status = status
        self.detail = detail or DEFAULT_DETAIL[status]
        self.retry_after = retry_after


def error_response(status: int, detail: str | None = None, *, retry_after: int | None = None) -> HttpResponse:
    body = Error(
        error=CODES.get(status, "internal_error" if status >= 500 else "invalid_request"),
        detail=detail or DEFAULT_DETAIL.get(status, "Error."),
    )
    response = HttpResponse(_encode(body), status=status, content_type="application/json")
    if status == 401:
        response["WWW-Authenticate"] = WWW_AUTHENTICATE
    if retry_after is not None:
        response["Retry-After"] = str(max(1, int(retry_after)))
    return response


def sentence(text: str) -> str:
    """A detail from a lower layer ("target_user_ids must all be members of the room") as a sentence."""
    return text if text.endswith(".") else f"{text}."
