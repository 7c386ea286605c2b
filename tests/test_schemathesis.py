"""Property-based fuzzing of the REST API against its own OpenAPI document.

Schemathesis loads /api/native/openapi.json from a real daphne server and sends generated
requests, valid and invalid, to every operation: never a 5xx, every status and body as
documented, every error in API.md's format. Once anonymous (schemathesis also invents bearer
values of its own), once as alice, a member of "general", with a freshly minted token on every
call: logout and log-out-everywhere are fuzzed too, without starving the calls after them.
"""

import itertools

import httpx
import jsonschema
import pytest
import schemathesis
from hypothesis import HealthCheck, settings
from schemathesis.specs.openapi.checks import positive_data_acceptance

from native_api.schemas.openapi import document
from rooms.posting import post_message
from tests.conftest import bearer
from tokens.login import issue_token

# Bounded and reproducible: a fixed example budget per operation, no deadline (a real server
# answers over the loopback), derandomized so that a failure replays identically.
FUZZ = settings(
    max_examples=30,
    deadline=None,
    derandomize=True,
    database=None,
    suppress_health_check=list(HealthCheck),
)

# "Schema-valid data must be accepted" cannot hold where validity depends on data no schema
# can describe: a public key that parses as an SSH key (else 400 per API.md), and target user
# ids that are members of the room (else 400). Every other check still runs on these two.
DATA_DEPENDENT = {("POST", "/api/native/token"), ("POST", "/api/native/rooms/{slug}/messages")}


def load(server, *, security_parameters: bool):
    loaded = schemathesis.openapi.from_url(f"{server.url}/api/native/openapi.json")
    # Unknown query parameters are ignored by design, as most HTTP APIs do; do not send them
    # as "invalid" data that must be refused.
    loaded.config.generation.update(
        allow_extra_parameters=False, with_security_parameters=security_parameters
    )
    return loaded


@pytest.fixture
def cast(alice, bob, mallory, general, alice_only):
    """Messages for the 200 paths to return: a public one, one targeted at bob, bob's reply."""
    post_message(alice, "general", "hello everyone", "c-1", None)
    post_message(alice, "general", "just for bob", "c-2", [bob.pk])
    post_message(bob, "general", "hi alice", None, None)
    return {"alice": alice, "bob": bob}


@pytest.fixture
def anonymous_schema(server, cast):
    return load(server, security_parameters=True)


@pytest.fixture
def member_schema(server, cast):
    loaded = load(server, security_parameters=False)

    @loaded.auth(refresh_interval=None)  # no caching: a new token for every call
    class FreshAliceToken:
        def get(self, case, context):
            return bearer(cast["alice"], device_name="fuzz")

        def set(self, case, token, context):
            case.headers = {**(case.headers or {}), "Authorization": f"Bearer {token}"}

    return loaded


def call_and_check(case):
    excluded = [positive_data_acceptance] if (case.method, case.path) in DATA_DEPENDENT else []
    response = case.call_and_validate(excluded_checks=excluded)
    # Documented or not, no 5xx, and every error is {"error": code, "detail": sentence}.
    request = response.request
    where = f"{request.method} {request.url} {request.body!r:.300} → {response.status_code}"
    assert response.status_code < 500, f"{where} {response.text[:500]}"
    if response.status_code >= 400:
        assert response.headers.get("content-type", [""])[0].startswith("application/json"), where
        jsonschema.validate(response.json(), document()["components"]["schemas"]["Error"])
    if response.status_code == 401:
        assert response.headers.get("www-authenticate") == ["Bearer"], where
    if response.status_code == 204:
        assert "content-type" not in response.headers and not response.content, where
    return response


# What the member run must reach, so that it cannot pass by only ever meeting 4xx.
MEMBER_SUCCESSES = {
    ("GET", "/api/native/me"): 200,
    ("POST", "/api/native/ws-ticket"): 201,
    ("GET", "/api/native/ws-ticket"): 200,
    ("DELETE", "/api/native/logout"): 204,
    ("GET", "/api/native/tokens"): 200,
    ("DELETE", "/api/native/tokens"): 204,
    ("DELETE", "/api/native/tokens/{token_id}"): 204,
    ("GET", "/api/native/rooms"): 200,
    ("GET", "/api/native/rooms/{slug}/history"): 200,
    ("GET", "/api/native/rooms/{slug}/members"): 200,
    ("POST", "/api/native/rooms/{slug}/messages"): 201,
}


anonymous = schemathesis.pytest.from_fixture("anonymous_schema")
member = schemathesis.pytest.from_fixture("member_schema")


@pytest.mark.e2e
@anonymous.parametrize()
@FUZZ
def test_anonymous_requests_get_documented_answers_and_never_a_server_error(case):
    call_and_check(case)


@pytest.fixture
def member_run(cast):
    """Steers every other call to real objects; afterwards, checks the successes were reached."""
    run = {"calls": itertools.count(), "seen": set()}
    yield run
    missing = sorted(
        f"{m} {p} {code}" for (m, p), code in MEMBER_SUCCESSES.items() if (m, p, code) not in run["seen"]
    )
    assert not missing, f"the member run never reached: {missing}"


@pytest.mark.e2e
@member.parametrize()
@FUZZ
def test_a_room_member_gets_documented_answers_and_never_a_server_error(case, cast, member_run):
    # Random slugs and token ids only ever meet the 403 / 404 paths: every other call gets
    # alice's room, or one of her live tokens, instead.
    parameters = case.path_parameters or {}
    if parameters and next(member_run["calls"]) % 2 == 0:
        if "slug" in parameters:
            parameters["slug"] = "general"
        if "token_id" in parameters:
            parameters["token_id"] = issue_token(cast["alice"], device_name="victim").token.public_id
    response = call_and_check(case)
    member_run["seen"].add((case.method, case.path, response.status_code))


# --- hand-picked hostile requests that generated data rarely reaches -------------------------


def post_json(client, path: str, raw_body: str, raw_token: str):
    return client.generic(
        "POST",
        path,
        raw_body.encode(),
        content_type="application/json",
        HTTP_AUTHORIZATION=f"Bearer {raw_token}",
    )


@pytest.mark.parametrize(
    "raw_body",
    [
        "[" * 30_000 + "]" * 30_000,  # under 64 KiB, far past json's recursion limit
        '{"body": "' + "\\u0000" + '"}',  # NUL: PostgreSQL text cannot store it
        '{"body": "' + "\\ud800" + '"}',  # a lone surrogate: UTF-8 cannot encode it
        '{"body": "ok", "client_id": "' + "\\udfff" + '"}',
    ],
    ids=["nested", "nul", "high-surrogate", "low-surrogate-in-client-id"],
)
def test_a_body_no_database_can_store_is_a_400_not_a_server_error(client, alice, general, raw_body):
    response = post_json(client, "/api/native/rooms/general/messages", raw_body, bearer(alice))
    assert response.status_code == 400 and response.json()["error"] == "invalid_request"


@pytest.mark.parametrize("slug", ["gen%00eral", "%ED%A0%80", "general%0A", "GENERAL", "a" * 65])
def test_a_malformed_room_slug_is_the_same_403_as_an_unknown_room(client, alice, general, slug):
    response = client.get(f"/api/native/rooms/{slug}/history", HTTP_AUTHORIZATION=f"Bearer {bearer(alice)}")
    assert response.status_code == 403 and response.json()["error"] == "forbidden"


@pytest.mark.parametrize("query", ["before=5&before=1", "limit=", "limit=1_0", "limit=%EF%BC%95", "after= 3"])
def test_an_ambiguous_or_non_decimal_query_parameter_is_a_400(client, alice, general, query):
    response = client.get(
        f"/api/native/rooms/general/history?{query}", HTTP_AUTHORIZATION=f"Bearer {bearer(alice)}"
    )
    assert response.status_code == 400 and response.json()["error"] == "invalid_request"


@pytest.mark.e2e
def test_daphne_answers_a_malformed_form_body_in_the_json_error_format(server):
    """twisted used to parse multipart bodies itself and answer a bare 400 before the app saw them."""
    response = httpx.post(
        f"{server.url}/api/native/token",
        content=b'{"public_key": "x", "nonce": "y", "signature": "z"}',
        headers={"Content-Type": "multipart/form-data"},
    )
    assert response.status_code == 400 and response.json()["error"] == "invalid_request"


@pytest.mark.e2e
@pytest.mark.parametrize(
    "path", ["/api/native/health", "/api/native/openapi.json", "/api/native/asyncapi.json"]
)
def test_an_unsafe_method_on_a_read_only_endpoint_is_a_405_not_a_csrf_403(server, path):
    response = httpx.post(f"{server.url}{path}")
    assert response.status_code == 405 and response.json()["error"] == "method_not_allowed"
