"""The OpenAPI document: valid OpenAPI 3.1, true to the routes, and real answers match it."""

import copy
import re

import jsonschema
import pytest
from django.urls import URLPattern, URLResolver, get_resolver
from openapi_spec_validator import validate
from openapi_spec_validator.validation.exceptions import OpenAPIValidationError

from native_api.schemas.openapi import document
from tests.conftest import auth_header, bearer
from tokens.models import NativeToken

pytestmark = pytest.mark.django_db

METHODS = {"get", "post", "put", "patch", "delete"}

# The names generated clients give their functions: renaming one breaks every client.
OPERATION_IDS = {
    ("get", "/api/native/health"): "getHealth",
    ("get", "/api/native/openapi.json"): "getOpenApiDocument",
    ("get", "/api/native/asyncapi.json"): "getAsyncApiDocument",
    ("get", "/api/native/challenge"): "getChallenge",
    ("post", "/api/native/token"): "createToken",
    ("get", "/api/native/me"): "getMe",
    ("post", "/api/native/ws-ticket"): "createWsTicket",
    ("get", "/api/native/ws-ticket"): "getWsTicket",
    ("delete", "/api/native/logout"): "logout",
    ("get", "/api/native/tokens"): "listTokens",
    ("delete", "/api/native/tokens"): "revokeAllTokens",
    ("delete", "/api/native/tokens/{token_id}"): "revokeToken",
    ("get", "/api/native/rooms"): "listRooms",
    ("get", "/api/native/rooms/{slug}/history"): "getRoomHistory",
    ("get", "/api/native/rooms/{slug}/members"): "listRoomMembers",
    ("post", "/api/native/rooms/{slug}/messages"): "postMessage",
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
        if route.startswith("/api/native/"):
            yield re.sub(r"<(?:\w+:)?(\w+)>", r"{\1}", route), view


def operations(spec):
    for path, item in spec["paths"].items():
        for method, operation in item.items():
            yield method, path, operation


def allowed_methods(client, path, headers) -> set[str]:
    """Ask the real view which methods it takes: anything but 405 means 'allowed'."""
    allowed = set()
    for method in METHODS:
        response = getattr(client, method)(path, **headers)
        if response.status_code != 405:
            allowed.add(method)
    return allowed


def test_the_document_is_valid_openapi_3_1():
    spec = document()
    assert spec["openapi"] == "3.1.0"
    validate(spec)


def test_the_validator_refuses_a_broken_document():
    """So that the test above can fail: a response without a description is not OpenAPI."""
    broken = copy.deepcopy(document())
    del broken["paths"]["/api/native/me"]["get"]["responses"]["200"]["description"]
    with pytest.raises(OpenAPIValidationError):
        validate(broken)


def test_every_route_is_documented_with_exactly_its_methods(client, alice, general):
    spec = document()["paths"]
    routes = dict(api_routes())
    assert set(routes) == set(spec)
    headers = auth_header(bearer(alice))
    for template in routes:
        concrete = template.replace("{slug}", "general").replace("{token_id}", "nope")
        assert allowed_methods(client, concrete, headers) == set(spec[template]) & METHODS, template


def test_every_operation_has_its_stable_operation_id_and_a_declared_tag():
    spec = document()
    tags = {tag["name"] for tag in spec["tags"]}
    found = {(method, path): op["operationId"] for method, path, op in operations(spec)}
    assert found == OPERATION_IDS
    for method, path, op in operations(spec):
        assert len(op["tags"]) == 1 and op["tags"][0] in tags, (method, path)
    assert tags == {"auth", "tokens", "rooms", "health", "documents"}


def test_every_operation_documents_the_errors_it_can_answer():
    for method, path, op in operations(document()):
        responses = op["responses"]
        assert "Allow" in responses["405"]["headers"], (method, path)
        assert "413" in responses, (method, path)
        if "security" in op:
            assert {"401", "403", "429", "503"} <= set(responses), (method, path)
            assert "WWW-Authenticate" in responses["401"]["headers"]
            assert "Retry-After" in responses["429"]["headers"]
        if "requestBody" in op or any(p["in"] == "query" for p in op.get("parameters", [])):
            assert "400" in responses, (method, path)
        for status, answer in responses.items():
            if status >= "400" and path != "/api/native/health":
                assert answer["content"]["application/json"]["schema"] == {
                    "$ref": "#/components/schemas/Error"
                }


def test_every_timestamp_field_is_declared_with_the_one_shape():
    schemas = document()["components"]["schemas"]
    timestamp_fields = 0
    for name, schema in schemas.items():
        for field, declared in schema.get("properties", {}).items():
            if field.endswith("_at"):
                branches = declared.get("anyOf", [declared])
                shaped = [b for b in branches if b.get("type") == "string"]
                assert shaped and shaped[0]["pattern"].endswith(r"\.[0-9]{3}Z$"), (name, field)
                timestamp_fields += 1
    assert timestamp_fields >= 5  # IssuedToken, TokenInfo (3), Message


def test_token_info_has_one_shape_for_both_kinds_with_every_field_required():
    token_info = document()["components"]["schemas"]["TokenInfo"]
    assert set(token_info["required"]) == set(token_info["properties"])
    assert token_info["properties"]["kind"]["enum"] == ["native", "service"]


def test_the_document_is_served_as_json_without_authentication(client):
    response = client.get("/api/native/openapi.json")
    assert response.status_code == 200 and response.json() == document()


def _validate(spec, template, method, response):
    documented = spec["paths"][template][method]["responses"].get(str(response.status_code))
    assert documented is not None, f"{method} {template} answered an undocumented {response.status_code}"
    if response.status_code == 204:
        assert "content" not in documented and response.content == b""
        return
    schema = dict(documented["content"]["application/json"]["schema"], components=spec["components"])
    # The components ride along so that "#/components/schemas/..." refs resolve.
    jsonschema.Draft202012Validator(schema).validate(response.json())


def test_real_responses_validate_against_the_documented_schemas(client, alice, bob, general):
    spec = document()
    raw = bearer(alice)
    headers = auth_header(raw)
    bearer(alice, device_name="other")
    other_id = NativeToken.objects.get(device_name="other").public_id
    json_body = {"content_type": "application/json", **headers}
    calls = [
        ("get", "/api/native/health", "/api/native/health", {}),
        ("get", "/api/native/challenge", "/api/native/challenge", {}),
        ("post", "/api/native/token", "/api/native/token", {"data": {}, "content_type": "application/json"}),
        (
            "post",
            "/api/native/rooms/{slug}/messages",
            "/api/native/rooms/general/messages",
            {"data": {"body": "x", "client_id": "k"}, **json_body},
        ),
        (
            "post",
            "/api/native/rooms/{slug}/messages",
            "/api/native/rooms/general/messages",
            {"data": {"body": "x", "client_id": "k"}, **json_body},
        ),
        (
            "post",
            "/api/native/rooms/{slug}/messages",
            "/api/native/rooms/general/messages",
            {"data": {"body": ""}, **json_body},
        ),
        (
            "post",
            "/api/native/rooms/{slug}/messages",
            "/api/native/rooms/nope/messages",
            {"data": {"body": "x"}, **json_body},
        ),
        ("get", "/api/native/me", "/api/native/me", headers),
        ("post", "/api/native/ws-ticket", "/api/native/ws-ticket", headers),
        ("get", "/api/native/ws-ticket", "/api/native/ws-ticket", headers),
        ("get", "/api/native/tokens", "/api/native/tokens", headers),
        ("get", "/api/native/rooms", "/api/native/rooms", headers),
        ("get", "/api/native/rooms/{slug}/history", "/api/native/rooms/general/history", headers),
        ("get", "/api/native/rooms/{slug}/history", "/api/native/rooms/general/history?limit=0", headers),
        ("get", "/api/native/rooms/{slug}/history", "/api/native/rooms/nope/history", headers),
        ("get", "/api/native/rooms/{slug}/members", "/api/native/rooms/general/members", headers),
        ("get", "/api/native/me", "/api/native/me", {}),
        ("delete", "/api/native/tokens/{token_id}", "/api/native/tokens/nope", headers),
        ("delete", "/api/native/tokens/{token_id}", f"/api/native/tokens/{other_id}", headers),
        ("delete", "/api/native/logout", "/api/native/logout", auth_header(bearer(alice))),
        ("delete", "/api/native/tokens", "/api/native/tokens", headers),
        ("get", "/api/native/openapi.json", "/api/native/openapi.json", {}),
        ("get", "/api/native/asyncapi.json", "/api/native/asyncapi.json", {}),
    ]
    statuses = set()
    for method, template, path, extra in calls:
        response = getattr(client, method)(path, **extra)
        _validate(spec, template, method, response)
        statuses.add(response.status_code)
    assert statuses >= {200, 201, 204, 400, 401, 403, 404}
