"""A client generated from the served OpenAPI document works, and has names a developer would pick.

openapi-python-client generates a package from /api/native/openapi.json of a real server (once
per session: generation takes a few seconds); the tests import it, log in with a real SSH
signature, list rooms, post and read history through it, as a client developer would.
"""

import importlib
import json
import subprocess
import sys

import httpx
import pytest

from tests.server import VENV_BIN
from tests.ssh_helpers import public_key_line, sign

pytestmark = pytest.mark.e2e

PACKAGE = "native_gen"
CONFIG = f"project_name_override: {PACKAGE}\npackage_name_override: {PACKAGE}\npost_hooks: []\n"

# operationId → the module (and function) every generated client names after it.
EXPECTED_MODULES = {
    "auth": {"get_challenge", "create_token", "get_me", "create_ws_ticket", "get_ws_ticket", "logout"},
    "tokens": {"list_tokens", "revoke_token", "revoke_all_tokens"},
    "rooms": {"list_rooms", "get_room_history", "list_room_members", "post_message"},
    "health": {"get_health"},
    "documents": {"get_open_api_document", "get_async_api_document"},
}


@pytest.fixture(scope="session")
def generated(live_server_process, tmp_path_factory):
    """The generated package, imported: native_gen.api.<tag>.<operation>, native_gen.models."""
    work = tmp_path_factory.mktemp("generated-client")
    spec = work / "openapi.json"
    spec.write_text(json.dumps(httpx.get(f"{live_server_process.url}/api/native/openapi.json").json()))
    (work / "config.yml").write_text(CONFIG)
    result = subprocess.run(
        [str(VENV_BIN / "openapi-python-client"), "generate", "--path", str(spec), "--config", "config.yml"]
        + ["--meta", "none", "--output-path", PACKAGE],
        cwd=work,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert "Warning" not in result.stdout + result.stderr, result.stdout + result.stderr
    sys.path.insert(0, str(work))
    try:
        yield importlib.import_module(PACKAGE), work / PACKAGE
    finally:
        sys.path.remove(str(work))
        for name in [m for m in sys.modules if m == PACKAGE or m.startswith(PACKAGE + ".")]:
            del sys.modules[name]


def test_the_generated_functions_are_named_after_the_operation_ids(generated):
    _, root = generated
    found = {
        tag.name: {module.stem for module in tag.glob("*.py") if module.stem != "__init__"}
        for tag in (root / "api").iterdir()
        if tag.is_dir() and not tag.name.startswith("__")
    }
    assert found == EXPECTED_MODULES


def test_a_developer_logs_in_lists_rooms_posts_and_reads_history_through_it(
    generated, server, alice, bob, general, keys
):
    package, _ = generated

    def api(path):
        return importlib.import_module(f"{PACKAGE}.api.{path}")

    models = importlib.import_module(f"{PACKAGE}.models")
    anonymous = package.Client(base_url=server.url, raise_on_unexpected_status=True)
    challenge = api("auth.get_challenge").sync(client=anonymous)
    issued = api("auth.create_token").sync(
        client=anonymous,
        body=models.LoginRequest(
            public_key=public_key_line(keys["alice"]),
            nonce=challenge.nonce,
            signature=sign(keys["alice"], challenge.nonce.encode(), challenge.namespace),
            device_name="generated",
        ),
    )
    assert isinstance(issued, models.IssuedToken) and issued.user.username == "alice"
    assert issued.expires_at.tzinfo is not None  # parsed as a datetime, not left a string

    client = package.AuthenticatedClient(
        base_url=server.url, token=issued.token, raise_on_unexpected_status=True
    )
    me = api("auth.get_me").sync(client=client)
    assert me.token.kind == models.TokenInfoKind.NATIVE and me.token.device_name == "generated"
    assert me.token.created_at is not None and me.token.current is True

    rooms = api("rooms.list_rooms").sync(client=client)
    assert [room.slug for room in rooms.rooms] == ["general"]

    posted = api("rooms.post_message").sync_detailed(
        "general", client=client, body=models.PostMessage(body="via a generated client", client_id="gen-1")
    )
    assert posted.status_code == 201 and posted.parsed.body == "via a generated client"
    retried = api("rooms.post_message").sync_detailed(
        "general", client=client, body=models.PostMessage(body="retry", client_id="gen-1")
    )
    assert retried.status_code == 200 and retried.parsed.id == posted.parsed.id

    page = api("rooms.get_room_history").sync("general", client=client, after=0)
    assert [(m.id, m.sender.username, m.body) for m in page.messages] == [
        (posted.parsed.id, "alice", "via a generated client")
    ]
    assert page.has_more is False and page.messages[0].created_at.tzinfo is not None

    members = api("rooms.list_room_members").sync("general", client=client)
    assert [m.username for m in members.members] == ["alice", "bob"]

    refused = api("rooms.get_room_history").sync("no-such-room", client=client)
    assert isinstance(refused, models.Error) and refused.error == models.ErrorError.FORBIDDEN

    assert api("auth.logout").sync_detailed(client=client).status_code == 204
    after_logout = api("auth.get_me").sync_detailed(client=client)
    assert after_logout.status_code == 401 and after_logout.headers["WWW-Authenticate"] == "Bearer"
