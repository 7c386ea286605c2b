"""Parsing request bodies and query parameters into clear 400s."""

import json

from django.core.exceptions import RequestDataTooBig

from native_api.errors import ApiError


def json_object(request) -> dict:
    try:
        body = request.body
    except RequestDataTooBig:
        raise ApiError(413) from None
    try:
        data = json.loads(body or b"null")
    except (ValueError, UnicodeDecodeError):
        raise ApiError(400, "The body is not valid JSON.") from None
    if not isinstance(data, dict):
        raise ApiError(400, "The body must be a JSON object.")
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
    raw = request.GET.get(name)
    if raw is None or raw == "":
        return default
    try:
        value = int(raw)
    except ValueError:
        raise ApiError(400, f"{name} must be an integer.") from None
    if not minimum <= value <= maximum:
        raise ApiError(400, f"{name} must be between {minimum} and {maximum}.")
    return value
