"""The OpenAPI 3.1 description of the REST API, maintained by hand next to the views.

Hand-written because the views are plain Django functions (no serializer framework to generate
from); tests/test_openapi.py keeps it honest by comparing it with the URL patterns and by
validating real responses against it.
"""

from django.http import JsonResponse
from django.views.decorators.csrf import csrf_exempt
from django.views.decorators.http import require_GET


def _ref(name: str) -> dict:
    return {"$ref": f"#/components/schemas/{name}"}


def _json(schema: dict, description: str = "OK") -> dict:
    return {"description": description, "content": {"application/json": {"schema": schema}}}


def _error(description: str) -> dict:
    return _json(_ref("Error"), description)


_MAX_ID = 2**63 - 1  # ids are 64-bit; larger numbers are refused with 400
_ID = {"type": "integer", "minimum": 1, "maximum": _MAX_ID}
_CURSOR = {"type": "integer", "minimum": 0, "maximum": _MAX_ID}
_TIMESTAMP = {"type": "string", "format": "date-time"}
_NULLABLE_TIMESTAMP = {"type": ["string", "null"], "format": "date-time"}

SCHEMAS = {
    "Error": {
        "type": "object",
        "required": ["error", "detail"],
        "properties": {
            "error": {
                "type": "string",
                "enum": [
                    "invalid_request",
                    "unauthorized",
                    "forbidden",
                    "not_found",
                    "method_not_allowed",
                    "payload_too_large",
                    "rate_limited",
                    "unavailable",
                    "internal_error",
                ],
            },
            "detail": {"type": "string"},
        },
        "additionalProperties": False,
    },
    "User": {
        "type": "object",
        "required": ["id", "username"],
        "properties": {"id": _ID, "username": {"type": "string"}},
        "additionalProperties": False,
    },
    "TokenInfo": {
        "type": "object",
        "required": ["id", "expires_at", "current"],
        "properties": {
            "id": {"type": "string"},
            "kind": {"type": "string", "enum": ["service"], "description": "Present for service tokens."},
            "device_name": {"type": "string"},
            "user_agent": {"type": "string"},
            "created_ip": {"type": ["string", "null"]},
            "created_at": _TIMESTAMP,
            "last_used_at": _NULLABLE_TIMESTAMP,
            "expires_at": _TIMESTAMP,
            "current": {"type": "boolean"},
        },
        "additionalProperties": False,
    },
    "Message": {
        "type": "object",
        "required": ["id", "room", "sender", "body", "created_at", "client_id", "target_user_ids"],
        "properties": {
            "id": _ID,
            "room": {"type": "string"},
            "sender": _ref("User"),
            "body": {"type": "string", "minLength": 1, "maxLength": 4000},
            "created_at": _TIMESTAMP,
            "client_id": {"type": ["string", "null"], "maxLength": 64},
            "target_user_ids": {"type": "array", "items": _ID},
        },
        "additionalProperties": False,
    },
    "Health": {
        "type": "object",
        "required": ["status", "database", "channel_layer", "cache"],
        "properties": {
            name: {"type": "string", "enum": ["ok", "down"]}
            for name in ("status", "database", "channel_layer", "cache")
        },
        "additionalProperties": False,
    },
}

_AUTH_ERRORS = {
    "401": _error("No, bad, expired or revoked credential."),
    "403": _error("The account is disabled."),
    "429": _error("Too many failed authentications from this address."),
    "503": _error("A dependency is unavailable."),
}
_BEARER = [{"bearer": []}]
_SLUG = {"name": "slug", "in": "path", "required": True, "schema": {"type": "string"}}


def _authenticated(operation: dict) -> dict:
    return {**operation, "security": _BEARER, "responses": {**_AUTH_ERRORS, **operation["responses"]}}


_TICKET = _json(
    {
        "type": "object",
        "required": ["ticket", "expires_in", "url"],
        "properties": {
            "ticket": {"type": "string"},
            "expires_in": {"type": "integer"},
            "url": {"type": "string"},
        },
        "additionalProperties": False,
    }
)

PATHS = {
    "/api/native/health": {
        "get": {
            "summary": "Probe the database, cache and channel layer.",
            "responses": {
                "200": _json(_ref("Health")),
                "503": _json(_ref("Health"), "A dependency is down."),
            },
        }
    },
    "/api/native/challenge": {
        "get": {
            "summary": "A single-use login nonce (60 s).",
            "responses": {
                "200": _json(
                    {
                        "type": "object",
                        "required": ["nonce", "namespace", "expires_in"],
                        "properties": {
                            "nonce": {"type": "string"},
                            "namespace": {"type": "string"},
                            "expires_in": {"type": "integer"},
                        },
                        "additionalProperties": False,
                    }
                ),
                "429": _error("Rate limited."),
                "503": _error("Login is unavailable."),
            },
        }
    },
    "/api/native/token": {
        "post": {
            "summary": "Exchange an SSH signature over the nonce for a bearer token.",
            "requestBody": {
                "required": True,
                "content": {
                    "application/json": {
                        "schema": {
                            "type": "object",
                            "required": ["public_key", "nonce", "signature"],
                            "properties": {
                                "public_key": {"type": "string", "minLength": 1, "maxLength": 16384},
                                "nonce": {"type": "string", "minLength": 1},
                                "signature": {"type": "string", "minLength": 1, "maxLength": 16384},
                                "public_key_fingerprint": {"type": "string", "maxLength": 100},
                                "device_name": {"type": "string", "maxLength": 100},
                            },
                        }
                    }
                },
            },
            "responses": {
                "201": _json(
                    {
                        "type": "object",
                        "required": ["token", "token_id", "expires_at", "user"],
                        "properties": {
                            "token": {"type": "string"},
                            "token_id": {"type": "string"},
                            "expires_at": _TIMESTAMP,
                            "user": _ref("User"),
                        },
                        "additionalProperties": False,
                    },
                    "Logged in.",
                ),
                "400": _error("Malformed body."),
                "401": _error("Bad nonce, signature, namespace or unknown key."),
                "413": _error("Body over 64 KiB."),
                "429": _error("Rate limited."),
                "503": _error("Login is unavailable."),
            },
        }
    },
    "/api/native/me": {
        "get": _authenticated(
            {
                "summary": "The caller and the credential in use.",
                "responses": {
                    "200": _json(
                        {
                            "type": "object",
                            "required": ["user", "token"],
                            "properties": {"user": _ref("User"), "token": _ref("TokenInfo")},
                            "additionalProperties": False,
                        }
                    )
                },
            }
        )
    },
    "/api/native/ws-ticket": {
        "post": _authenticated(
            {"summary": "A single-use 30-second websocket ticket.", "responses": {"201": _TICKET}}
        ),
        "get": _authenticated({"summary": "Same as POST.", "responses": {"200": _TICKET}}),
    },
    "/api/native/logout": {
        "delete": _authenticated(
            {
                "summary": "Revoke the presented token (native or service) and close its sockets.",
                "responses": {"204": {"description": "Logged out."}},
            }
        )
    },
    "/api/native/tokens": {
        "get": _authenticated(
            {
                "summary": "The caller's live native tokens, newest first.",
                "responses": {
                    "200": _json(
                        {
                            "type": "object",
                            "required": ["tokens"],
                            "properties": {"tokens": {"type": "array", "items": _ref("TokenInfo")}},
                            "additionalProperties": False,
                        }
                    )
                },
            }
        ),
        "delete": _authenticated(
            {"summary": "Log out everywhere.", "responses": {"204": {"description": "All revoked."}}}
        ),
    },
    "/api/native/tokens/{token_id}": {
        "delete": _authenticated(
            {
                "summary": "Revoke one of the caller's tokens.",
                "parameters": [
                    {"name": "token_id", "in": "path", "required": True, "schema": {"type": "string"}}
                ],
                "responses": {
                    "204": {"description": "Revoked."},
                    "404": _error("Not a live token of the caller."),
                },
            }
        )
    },
    "/api/native/rooms": {
        "get": _authenticated(
            {
                "summary": "Rooms the caller belongs to.",
                "responses": {
                    "200": _json(
                        {
                            "type": "object",
                            "required": ["rooms"],
                            "properties": {
                                "rooms": {
                                    "type": "array",
                                    "items": {
                                        "type": "object",
                                        "required": ["slug", "name", "last_message_id"],
                                        "properties": {
                                            "slug": {"type": "string"},
                                            "name": {"type": "string"},
                                            "last_message_id": {"type": ["integer", "null"]},
                                        },
                                        "additionalProperties": False,
                                    },
                                }
                            },
                            "additionalProperties": False,
                        }
                    )
                },
            }
        )
    },
    "/api/native/rooms/{slug}/history": {
        "get": _authenticated(
            {
                "summary": "Visible messages in ascending id order.",
                "parameters": [
                    _SLUG,
                    {
                        "name": "limit",
                        "in": "query",
                        "schema": {"type": "integer", "minimum": 1, "maximum": 200, "default": 50},
                    },
                    {"name": "before", "in": "query", "schema": _CURSOR},
                    {"name": "after", "in": "query", "schema": _CURSOR},
                ],
                "responses": {
                    "200": _json(
                        {
                            "type": "object",
                            "required": ["room", "messages", "has_more"],
                            "properties": {
                                "room": {"type": "string"},
                                "messages": {"type": "array", "items": _ref("Message")},
                                "has_more": {"type": "boolean"},
                            },
                            "additionalProperties": False,
                        }
                    ),
                    "400": _error("Bad parameter."),
                    "403": _error("Not a member, or no such room."),
                },
            }
        )
    },
    "/api/native/rooms/{slug}/messages": {
        "post": _authenticated(
            {
                "summary": "Post a message (idempotent on client_id).",
                "parameters": [_SLUG],
                "requestBody": {
                    "required": True,
                    "content": {
                        "application/json": {
                            "schema": {
                                "type": "object",
                                "required": ["body"],
                                "properties": {
                                    "body": {"type": "string", "minLength": 1, "maxLength": 4000},
                                    "client_id": {"type": "string", "minLength": 1, "maxLength": 64},
                                    "target_user_ids": {"type": "array", "maxItems": 100, "items": _ID},
                                },
                            }
                        }
                    },
                },
                "responses": {
                    "201": _json(_ref("Message"), "Posted."),
                    "200": _json(_ref("Message"), "A client_id retry: the original message."),
                    "400": _error("Bad message."),
                    "403": _error("Not a member, or no such room."),
                    "413": _error("Body over 64 KiB."),
                },
            }
        )
    },
}


def document() -> dict:
    return {
        "openapi": "3.1.0",
        "info": {"title": "Native rooms API", "version": "1.0.0"},
        "paths": {
            "/api/native/openapi.json": {"get": {"responses": {"200": {"description": "This document."}}}}
        }
        | PATHS,
        "components": {
            "schemas": SCHEMAS,
            "securitySchemes": {"bearer": {"type": "http", "scheme": "bearer"}},
        },
    }


@csrf_exempt
@require_GET
def openapi_json(request):
    return JsonResponse(document())
