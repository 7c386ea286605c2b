"""Parsing request bodies and query parameters into clear 400s."""

import json
import re

from django.core.exceptions import RequestDataTooBig

from native_api.errors import ApiError

_INTEGER = re.compile(r"-?[0-9]{1,20}")


UNSTORABLE_TEXT = "Strings must be Unicode text without NUL characters or lone surrogates."


def has_unstorable_text(data) -> bool:
    """True when a string anywhere in ``data`` holds NUL or a lone surrogate.

    Both are valid JSON ("\\u0000", "\\ud800") but no database column takes them (PostgreSQL
    text refuses NUL; UTF-8 cannot encode a surrogate), so they must be a 400, not a driver error.
    """
    stack = [data]
    while stack:  # iterative: json.loads allows nesting close to the recursion limit
        value = stack.pop()
        if isinstance(value, str):
            if "\x00" in value or (not value.isascii() and not _encodable(value)):
                return True
        elif isinstance(value, dict):
            stack.extend(value.keys())
            stack.extend(value.values())
        elif isinstance(value, list):
            stack.extend(value)
    return False


def _encodable(value: str) -> bool:
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


def json_object(request) -> dict:
    try:
        body = request.body
    except RequestDataTooBig:
        raise ApiError(413) from None
    try:
        data = json.loads(body or b"null")
    except (ValueError, UnicodeDecodeError, RecursionError):
        raise ApiError(400, "The body is not valid JSON.") from None
    if not isinstance(data, dict):
        raise ApiError(400, "The body must be a JSON object.")
    if has_unstorable_text(data):
        raise ApiError(400, UNSTORABLE_TEXT)
    return data


def optional_str(data: dict, field: str, max_length: int) -> str | None:
    value = data.get(field)
    if value is None:
        return None
    if not isinstance(value, str) or len(value) > max_length:
        raise ApiError(400, f"{field} must be a string of at most {max_length} characters.")
    return value


def required_str(data: dict, field: str, max_length: int) -> str:
    value = optional_str(data, field, max_length)
    if not value:
        raise ApiError(400, f"{field} is required (a non-empty string).")
    return value


def int_param(
    request, name: str, *, default: int | None = None, minimum: int = 0, maximum: int = 2**63 - 1
) -> int | None:
    given = request.GET.getlist(name)
    if not given:
        return default
    # One plain decimal value: int() alone would also take "1_000", " 7" or "٧", and with a
    # repeated parameter a proxy and the app could each read a different one.
    if len(given) > 1:
        raise ApiError(400, f"{name} must be given at most once.")
    if not _INTEGER.fullmatch(given[0]):
        raise ApiError(400, f"{name} must be an integer.")
    value = int(given[0])
    if not minimum <= value <= maximum:
        raise ApiError(400, f"{name} must be between {minimum} and {maximum}.")
    return value
