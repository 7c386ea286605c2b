"""From JSON text to a declared struct, and from every refusal to one sentence naming the field.

msgspec does the parsing and the checking; this module only words its refusals the way API.md
wants them: ``{"error": "invalid_request", "detail": "body must be a string of 1 to 4000
characters."}``. The sentence is generated from the declaration itself (its type and limits),
so a changed limit changes the message too.
"""

import functools
import json
import re

import msgspec
from msgspec import inspect

from native_api.schemas.fields import MAX_ID

UNSTORABLE_TEXT = "Strings must be Unicode text without NUL characters or lone surrogates."


class InvalidInput(ValueError):
    """A body, query or frame that breaks its declaration; ``detail`` is the one-sentence reason."""

    def __init__(self, detail: str):
        super().__init__(detail)
        self.detail = detail


_MISSING = re.compile(r"^Object missing required field `(\w+)`")
_AT = re.compile(r" - at `\$\.(\w+)")


def field_detail(error: msgspec.ValidationError, shape: type) -> str | None:
    """The sentence for a refusal of one field of the struct ``shape``; None when the refusal
    is about the document as a whole (not an object)."""
    text = str(error)
    if missing := _MISSING.match(text):
        name = missing.group(1)
        return f"{name} is required ({rule(shape, name)})."
    if at := _AT.search(text):
        name = at.group(1)
        return f"{name} must be {rule(shape, name)}."
    return None


def undecodable_detail(data: bytes | str, not_json: str) -> str:
    """msgspec refused ``data`` as JSON. Python's json accepts lone surrogate escapes
    ("\\ud800") that msgspec refuses: those get the unstorable-text sentence, the rest ``not_json``.
    Only refused input takes this path, so parsing twice costs nothing on valid traffic."""
    try:
        parsed = json.loads(data)
    except (ValueError, RecursionError):
        return not_json
    return UNSTORABLE_TEXT if has_unstorable_text(parsed) else not_json


def check_storable(raw: bytes | str, value, text_fields: tuple[str, ...]) -> None:
    """NUL is valid JSON ("\\u0000") but no PostgreSQL text column takes it: a 400, not a 500.

    JSON cannot carry a raw NUL inside a string, only its escape, so text without the escape
    is cleared by one substring search and the fields are looked at only when it appears."""
    if (b"\\u0000" if isinstance(raw, bytes) else "\\u0000") not in raw:
        return
    for name in text_fields:
        text = getattr(value, name)
        if text is not None and "\x00" in text:
            raise InvalidInput(UNSTORABLE_TEXT)


def has_unstorable_text(data) -> bool:
    """True when a string anywhere in ``data`` (keys included) holds NUL or a lone surrogate."""
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


# --- wording generated from the declarations ----------------------------------------------------


@functools.cache
def fields_of(shape: type) -> dict[str, inspect.Field]:
    return {field.encode_name: field for field in inspect.type_info(shape).fields}


@functools.cache
def text_fields(shape: type) -> tuple[str, ...]:
    """The struct's fields that hold a string (or null)."""
    return tuple(field.name for field in fields_of(shape).values() if _is_text(field.type))


def _is_text(info) -> bool:
    if isinstance(info, inspect.Metadata):
        return _is_text(info.type)
    if isinstance(info, inspect.UnionType):
        return all(isinstance(t, inspect.StrType | inspect.NoneType) or _is_text(t) for t in info.types)
    return isinstance(info, inspect.StrType)


@functools.cache
def rule(shape: type, name: str) -> str:
    """What field ``name`` of ``shape`` must be, ending a sentence ("a string of 1 to 64 characters")."""
    field = fields_of(shape).get(name)
    return describe(field.type) if field else "valid"


def describe(info) -> str:
    if isinstance(info, inspect.Metadata):
        return (info.extra or {}).get("must_be") or describe(info.type)
    if isinstance(info, inspect.UnionType):
        kinds = [t for t in info.types if not isinstance(t, inspect.NoneType)]
        return " or ".join(describe(t) for t in kinds)
    if isinstance(info, inspect.StrType):
        return _describe_str(info)
    if isinstance(info, inspect.IntType):
        return _describe_int(info)
    if isinstance(info, inspect.BoolType):
        return "true or false"
    if isinstance(info, inspect.LiteralType):
        return "one of " + ", ".join(repr(v) for v in info.values)
    if isinstance(info, inspect.ListType):
        size = f"at most {info.max_length} " if info.max_length is not None else ""
        return f"a list of {size}{_plural(info.item_type)}"
    return "valid"


def _describe_str(info: inspect.StrType) -> str:
    low, high = info.min_length or 0, info.max_length
    if high is not None:
        return f"a string of {low} to {high} characters" if low else f"a string of at most {high} characters"
    return "a non-empty string" if low else "a string"


def _describe_int(info: inspect.IntType) -> str:
    low, high = info.ge, info.le
    if high is not None and high != MAX_ID:
        return f"an integer from {low} to {high}" if low is not None else f"an integer of at most {high}"
    if low == 0:
        return "a non-negative integer"
    if low == 1:
        return "a positive integer"
    return "an integer"


def _plural(info) -> str:
    single = describe(info)
    if single.startswith(("a ", "an ")):
        return single.split(" ", 1)[1] + "s"
    return "items"
