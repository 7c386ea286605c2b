"""The OpenAPI document matches the real routes, and real responses match the document."""

import re

import jsonschema
import pytest
from django.urls import URLPattern, URLResolver, get_resolver

from native_api.openapi import document
from tests.conftest import auth_header, bearer

pytestmark = pytest.mark.django_db

METHODS = {"get", "post", "put", "patch", "delete"}


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


def allowed_methods(client, path, headers) -> set[str]:
    """Ask the real view which methods it takes: anything but 405 means 'allowed'."""
    allowed = set()
    for method in METHODS:
        response = getattr(client, method)(path, **headers)
        if response.status_code != 405:
            allowed.add(method)
    return allowed


def test_every_route_is_documented_with_exactly_its_methods(client, alice, general):
    spec = document()["paths"]
    routes = dict(api_routes())
    assert set(routes) == set(spec)
    headers = auth_header(bearer(alice))
    for template in routes:
        concrete = template.replace("{slug}", "general").replace("{token_id}", "nope")
        assert allowed_methods(client, concrete, headers) == set(spec[template]) & METHODS, template


def test_the_document_is_served_as_json(client):
    response = client.get("/api/native/openapi.json")
    assert response.status_code == 200 and response.json()["openapi"].startswith("3.")


def test_real_responses_validate_against_the_documented_schemas(client, alice, bob, general):
    spec = document()
    raw = bearer(alice)
    headers = auth_header(raw)
    client.post(
        "/api/native/rooms/general/messages", {"body": "x"}, content_type="application/json", **headers
    )
    calls = [
        ("get", "/api/native/health", "/api/native/health", {}),
        ("get", "/api/native/challenge", "/api/native/challenge", {}),
        ("get", "/api/native/me", "/api/native/me", headers),
        ("post", "/api/native/ws-ticket", "/api/native/ws-ticket", headers),
        ("get", "/api/native/tokens", "/api/native/tokens", headers),
        ("get", "/api/native/rooms", "/api/native/rooms", headers),
        ("get", "/api/native/rooms/{slug}/history", "/api/native/rooms/general/history", headers),
        ("get", "/api/native/rooms/{slug}/history", "/api/native/rooms/nope/history", headers),
        ("get", "/api/native/me", "/api/native/me", {}),
        ("delete", "/api/native/tokens/{token_id}", "/api/native/tokens/nope", headers),
    ]
    for method, template, path, extra in calls:
        response = getattr(client, method)(path, **extra)
        documented = spec["paths"][template][method]["responses"][str(response.status_code)]
        schema = dict(documented["content"]["application/json"]["schema"], components=spec["components"])
        # The components ride along so that "#/components/schemas/..." refs resolve.
        jsonschema.validate(response.json(), schema)
