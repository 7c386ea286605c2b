"""The OpenAPI 3.1 document, generated from the declarations: nothing here is written twice.

Paths come from the URL conf; each view's methods, operationIds, tags, bodies, queries and
answers from its ``@endpoint`` operations (native_api.endpoints); the schemas from the msgspec
structs (native_api.schemas.http). The error answers every operation can give follow from
what it declares: authentication brings 401/403/429/503, a body or a query brings 400, and
every path answers 405 to other methods and 413 to a body over 64 KiB.
"""

import functools
import re

import msgspec
from django.urls import URLPattern, URLResolver, get_resolver

from native_api.schemas.http import Error

PREFIX = "/api/native/"
_REF = "#/components/schemas/{name}"

TAGS = [
    {"name": "auth", "description": "SSH-key login, the current credential, websocket tickets, logout."},
    {"name": "tokens", "description": "The caller's native tokens (sessions)."},
    {"name": "rooms", "description": "Rooms, their members, history and posting."},
    {"name": "health", "description": "Liveness of the server and its dependencies."},
    {"name": "documents", "description": "The machine-readable documents: this one and the AsyncAPI one."},
]

_AUTH_ERRORS = {
    401: "No, malformed, unknown, expired or revoked credential.",
    403: "The account is disabled.",
    429: "Too many failed authentications from this address: every request from it is refused "
    "until the window ends (Retry-After).",
    503: "A dependency (database, cache) is unavailable; retry later.",
}
_BODY_ERROR = (
    "Malformed JSON, a body not sent as Content-Type: application/json, or a field that breaks "
    "its declaration (the detail names the field)."
)
_QUERY_ERROR = "A query parameter out of range, not a plain decimal integer, or given twice."
_HEADERS = {
    401: {
        "WWW-Authenticate": {
            "description": "Always `Bearer`.",
            "schema": {"type": "string", "enum": ["Bearer"]},
        }
    },
    405: {"Allow": {"description": "The methods this path takes.", "schema": {"type": "string"}}},
    429: {
        "Retry-After": {
            "description": "Whole seconds to wait.",
            "schema": {"type": "integer", "minimum": 1},
        }
    },
}


def api_routes():
    """(path template, view) for every URL under /api/native/, from the real URL conf."""

    def walk(patterns, prefix):
        for pattern in patterns:
            route = prefix + str(pattern.pattern)
            if isinstance(pattern, URLResolver):
                yield from walk(pattern.url_patterns, route)
            elif isinstance(pattern, URLPattern):
                yield route, pattern.callback

    for route, view in walk(get_resolver().url_patterns, "/"):
        if route.startswith(PREFIX):
            yield re.sub(r"<(?:\w+:)?(\w+)>", r"{\1}", route), view


@functools.cache
def document() -> dict:
    routes = [(template, view) for template, view in api_routes() if getattr(view, "operations", None)]
    shapes = {Error}
    for _, view in routes:
        for op in view.operations.values():
            shapes.update(shape for shape, _ in op.responses.values() if isinstance(shape, type))
            if op.body is not None:
                shapes.add(op.body)
    _, components = msgspec.json.schema_components(
        sorted(shapes, key=lambda s: s.__name__), ref_template=_REF
    )
    paths = {
        template: {method: _operation(op, view.path_parameters) for method, op in view.operations.items()}
        for template, view in routes
    }
    return {
        "openapi": "3.1.0",
        "info": {
            "title": "Native rooms API",
            "version": "1.0.0",
            "description": "The REST part of the native rooms API. The websocket protocol is described "
            "by the AsyncAPI 3.0 document at /api/native/asyncapi.json. Every timestamp is RFC 3339 in "
            "UTC with exactly three fractional digits and Z.",
        },
        "tags": TAGS,
        "paths": paths,
        "components": {
            "schemas": components,
            "securitySchemes": {
                "bearer": {
                    "type": "http",
                    "scheme": "bearer",
                    "description": "A native token (nat_…) from createToken, or a service token (nst_…).",
                }
            },
        },
    }


def _operation(op, path_parameters: dict) -> dict:
    operation = {"operationId": op.id, "tags": [op.tag], "summary": op.summary}
    if op.description:
        operation["description"] = op.description
    parameters = [
        {"name": name, "in": "path", "required": True, "schema": msgspec.json.schema(declared)}
        for name, declared in path_parameters.items()
    ]
    if op.query is not None:
        parameters += _query_parameters(op.query)
    if parameters:
        operation["parameters"] = parameters
    if op.body is not None:
        operation["requestBody"] = {
            "required": True,
            "content": {"application/json": {"schema": _ref(op.body)}},
        }
    if op.auth:
        operation["security"] = [{"bearer": []}]
    responses = {str(status): _answer(shape, text) for status, (shape, text) in op.responses.items()}
    for status, text in sorted(_errors(op).items()):
        if str(status) not in responses:
            responses[str(status)] = _answer(Error, text, _HEADERS.get(status))
    operation["responses"] = dict(sorted(responses.items()))
    return operation


def _errors(op) -> dict[int, str]:
    errors: dict[int, list[str]] = {}

    def add(status, text):
        errors.setdefault(status, []).append(text)

    if op.body is not None:
        add(400, _BODY_ERROR)
    if op.query is not None:
        add(400, _QUERY_ERROR)
    if op.auth:
        for status, text in _AUTH_ERRORS.items():
            add(status, text)
    for status, text in op.errors.items():
        add(status, text)
    add(405, "This path does not take the method (see Allow).")
    add(413, "The request body is over 64 KiB.")
    return {status: " ".join(texts) for status, texts in errors.items()}


def _answer(shape, description: str, headers: dict | None = None) -> dict:
    answer = {"description": description}
    if headers:
        answer["headers"] = headers
    if shape is not None:
        answer["content"] = {
            "application/json": {"schema": _ref(shape) if isinstance(shape, type) else shape}
        }
    return answer


def _ref(shape: type) -> dict:
    return {"$ref": _REF.format(name=shape.__name__)}


def _query_parameters(shape: type) -> list[dict]:
    """One parameter per field of the query struct; null is how a struct says "absent", which a
    query string says by leaving the parameter out."""
    _, components = msgspec.json.schema_components([shape], ref_template=_REF)
    properties = components[shape.__name__]["properties"]
    parameters = []
    for name, declared in properties.items():
        declared = dict(declared)
        default = declared.pop("default", None)
        if "anyOf" in declared:
            (declared,) = [branch for branch in declared["anyOf"] if branch.get("type") != "null"]
            declared = dict(declared)
        if default is not None:
            declared["default"] = default
        parameter = {"name": name, "in": "query", "required": False, "schema": declared}
        if "description" in declared:
            parameter["description"] = declared.pop("description")
        parameters.append(parameter)
    return parameters
