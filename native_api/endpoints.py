"""Declaring an HTTP endpoint once: its methods, what it reads and answers, and its OpenAPI operation.

``@endpoint(get=Operation(...))`` makes a view CSRF-exempt (bearer tokens, no cookies), answers
other methods with the contract's 405 and an ``Allow`` header, applies bearer authentication
where the operation says so, and keeps the operations on the view, where
native_api.schemas.openapi finds them through the URL conf. What a view reads
(``read_body``, ``read_query``) and answers (``json_response``) goes through the same
declarations, so the document cannot drift from the behaviour.
"""

import functools
import re
from collections.abc import Callable
from dataclasses import dataclass, field
from inspect import iscoroutinefunction

import msgspec
from django.core.exceptions import RequestDataTooBig
from django.http import HttpResponse
from django.views.decorators.csrf import csrf_exempt
from msgspec import inspect

from native_api.auth import bearer_required
from native_api.errors import ApiError, error_response
from native_api.schemas.decoding import (
    InvalidInput,
    check_storable,
    field_detail,
    fields_of,
    rule,
    text_fields,
    undecodable_detail,
)

NOT_JSON = "The body is not valid JSON."
NOT_AN_OBJECT = "The body must be a JSON object."
NOT_JSON_CONTENT = "The body must be JSON, sent with Content-Type: application/json."


@dataclass(frozen=True)
class Operation:
    """One method of one path, as the OpenAPI document describes it."""

    id: str  # the operationId: generated clients name their function after it
    tag: str
    summary: str
    responses: dict  # success status → (body struct, or None for no body; description)
    body: type | None = None  # the request body's struct
    query: type | None = None  # the query parameters' struct
    auth: bool = False  # Authorization: Bearer required
    # A rate limit (native_api.ratelimits) counted per authenticated user, in the same round
    # trip as authentication's own lockout read (native_api.auth.bearer_required).
    user_limit: str | None = None
    # A read the view needs from Redis (credential -> foundation.redis_scripts.PendingRead), made
    # in that same round trip; the view finds its value as request.read_with_auth.
    read_with_auth: Callable | None = None
    errors: dict = field(default_factory=dict)  # further error status → when it is answered
    description: str = ""


def endpoint(path: dict | None = None, **operations: Operation):
    """``path`` maps each path parameter to its declared type; ``operations`` maps a lowercase
    HTTP method to its Operation."""
    allowed = sorted(method.upper() for method in operations)
    needs_auth = {op.auth for op in operations.values()}
    user_limits = {op.user_limit for op in operations.values()}
    reads = {op.read_with_auth for op in operations.values()}
    if len(needs_auth) != 1 or len(user_limits) != 1 or len(reads) != 1:
        raise ValueError("every method of one path authenticates, and is limited, the same way")
    (user_limit,), (read_with_auth,) = user_limits, reads
    if (user_limit is not None or read_with_auth is not None) and needs_auth != {True}:
        raise ValueError("a per-user limit, or a read with authentication, needs an authenticated user")

    def decorate(view):
        inner = (
            bearer_required(view, user_limit=user_limit, read_with_auth=read_with_auth)
            if needs_auth == {True}
            else view
        )
        if iscoroutinefunction(view):
            if needs_auth == {True}:
                raise ValueError("bearer_required wraps sync views only")

            async def wrapper(request, *args, **kwargs):
                if request.method not in allowed:
                    return method_not_allowed(allowed)
                return await inner(request, *args, **kwargs)

        else:

            def wrapper(request, *args, **kwargs):
                if request.method not in allowed:
                    return method_not_allowed(allowed)
                return inner(request, *args, **kwargs)

        wrapper = csrf_exempt(functools.wraps(view)(wrapper))
        wrapper.operations = operations
        wrapper.path_parameters = path or {}
        return wrapper

    return decorate


def method_not_allowed(allowed: list[str]) -> HttpResponse:
    response = error_response(405, f"Use {' or '.join(allowed)}.")
    response["Allow"] = ", ".join(allowed)
    return response


# --- reading ---------------------------------------------------------------------------------------


@functools.cache
def _decoder(shape: type) -> msgspec.json.Decoder:
    return msgspec.json.Decoder(shape)


def read_body(request, shape: type):
    """The request body as a ``shape`` struct, or ApiError 400 / 413 in API.md's words."""
    if request.content_type.lower() != "application/json" or request.content_params.get(
        "charset", "utf-8"
    ).lower() not in ("utf-8", "utf8"):
        raise ApiError(400, NOT_JSON_CONTENT)
    try:
        raw = request.body
    except RequestDataTooBig:
        raise ApiError(413) from None
    try:
        return decode_json(raw, shape)
    except InvalidInput as exc:
        raise ApiError(400, exc.detail) from None


def decode_json(raw: bytes, shape: type):
    """Decode and validate ``raw`` as ``shape``; InvalidInput names the first field at fault."""
    if not raw:
        raise InvalidInput(NOT_AN_OBJECT)
    try:
        value = _decoder(shape).decode(raw)
    except msgspec.ValidationError as exc:
        raise InvalidInput(field_detail(exc, shape) or NOT_AN_OBJECT) from None
    except (msgspec.DecodeError, ValueError, RecursionError):
        raise InvalidInput(undecodable_detail(raw, NOT_JSON)) from None
    check_storable(raw, value, text_fields(shape))
    return value


_DECIMAL = re.compile(r"-?[0-9]{1,20}")


def read_query(request, shape: type):
    """The query string as a ``shape`` struct. Each parameter at most once (a proxy and the app
    must not read different ones), integers in plain decimal only (``int()`` alone would take
    "1_000", " 7" or "٧"); unknown parameters are ignored."""
    given = {}
    for name, declared in fields_of(shape).items():
        values = request.GET.getlist(name)
        if not values:
            continue
        if len(values) > 1:
            raise ApiError(400, f"{name} must be given at most once.")
        value = values[0]
        if _is_integer(declared.type):
            if not _DECIMAL.fullmatch(value):
                raise ApiError(400, f"{name} must be {rule(shape, name)}.")
            value = int(value)
        given[name] = value
    try:
        return msgspec.convert(given, shape)
    except msgspec.ValidationError as exc:
        raise ApiError(400, field_detail(exc, shape) or "The query is malformed.") from None


def _is_integer(info) -> bool:
    if isinstance(info, inspect.Metadata):
        return _is_integer(info.type)
    if isinstance(info, inspect.UnionType):
        return any(_is_integer(t) for t in info.types)
    return isinstance(info, inspect.IntType)


# --- answering -------------------------------------------------------------------------------------

_encode = msgspec.json.Encoder().encode


def json_response(value, status: int = 200, headers: dict | None = None) -> HttpResponse:
    return HttpResponse(_encode(value), status=status, content_type="application/json", headers=headers)


def no_content() -> HttpResponse:
    """204 with no body and no Content-Type (Django would otherwise label nothing as text/html)."""
    response = HttpResponse(status=204)
    del response["Content-Type"]
    return response
