"""The house keeps DESIGN.md's shape: imports point down (config -> native_api -> live ->
tokens/rooms -> foundation), no circle between files, the client apart from the server; and the
seams between the layers agree on what crosses them (close codes, the message shape)."""

from pathlib import Path

import msgspec
import pytest

from live import verdicts
from native_api.schemas.frames import CloseCode
from native_api.schemas.http import Message
from tests import import_graph

ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture(scope="module")
def graph():
    return import_graph.edges(ROOT)


def test_every_import_points_down_the_layers(graph):
    assert import_graph.layer_violations(graph) == []


def test_no_two_files_import_each_other_even_through_others(graph):
    assert import_graph.circles(graph) == []


def test_the_graph_covers_every_package_and_their_lazy_imports(graph):
    importers = {edge.importer.split(".")[0] for edge in graph}
    assert importers >= set(import_graph.PACKAGES) - {"foundation"}
    # A function-level import counts (the poller reads rooms.models inside a method).
    assert any(e.importer == "live.poller" and e.imported == "rooms.models" for e in graph)


def _tree(tmp_path, files: dict[str, str]) -> Path:
    for name, text in files.items():
        path = tmp_path / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
    for package in import_graph.PACKAGES:
        (tmp_path / package).mkdir(exist_ok=True)
        (tmp_path / package / "__init__.py").touch()
    return tmp_path


def test_the_check_catches_a_domain_module_that_imports_the_engine(tmp_path):
    root = _tree(
        tmp_path,
        {"live/hub.py": "", "tokens/verifier.py": "def f():\n    from live.hub import get_hub\n"},
    )
    problems = import_graph.layer_violations(import_graph.edges(root))
    assert problems == ["points up or sideways across layers: tokens.verifier -> live.hub (line 2)"]


def test_the_check_catches_the_engine_importing_the_wire_and_the_client_importing_the_server(tmp_path):
    root = _tree(
        tmp_path,
        {
            "native_api/schemas/frames.py": "",
            "live/hub.py": "from native_api.schemas import frames\n",
            "native_client/api.py": "import tokens.crypto\n",
            "tokens/crypto.py": "",
        },
    )
    problems = import_graph.layer_violations(import_graph.edges(root))
    assert len(problems) == 2
    assert "live.hub -> native_api.schemas.frames" in problems[0] + problems[1]
    assert "native_client.api -> tokens.crypto" in problems[0] + problems[1]


def test_the_check_lets_admin_and_commands_look_up_but_catches_their_circles(tmp_path):
    root = _tree(
        tmp_path,
        {
            "live/presence.py": "",
            "tokens/admin.py": "from live import presence\n",
            "tokens/management/commands/x.py": "import native_api.views\n",
            "native_api/views.py": "",
            "rooms/a.py": "from rooms import b\n",
            "rooms/b.py": "from . import c\n",
            "rooms/c.py": "def later():\n    import rooms.a\n",
        },
    )
    graph = import_graph.edges(root)
    assert import_graph.layer_violations(graph) == []
    assert import_graph.circles(graph) == [["rooms.a", "rooms.b", "rooms.c"]]


def test_the_engines_close_codes_are_the_wires():
    for code, reason in (verdicts.REVOKED, verdicts.INACTIVE, verdicts.RESTART, verdicts.UNAVAILABLE):
        assert CloseCode(code)
        assert reason


def test_the_domains_message_value_is_exactly_the_wires_message_shape(alice, general):
    from rooms.posting import post_message

    posted = post_message(alice, "general", "hello", client_id="c1")
    declared = msgspec.convert(posted.message, Message)  # unknown or missing fields would raise
    assert list(posted.message) == list(Message.__struct_fields__)  # same order: same bytes
    assert msgspec.json.encode(declared) == msgspec.json.encode(posted.message)


def _requirements(name: str) -> set[str]:
    names = set()
    for line in (ROOT / name).read_text().splitlines():
        line = line.split("#")[0].strip()
        if line.startswith("-r "):
            names |= _requirements(line[3:].strip())
        elif line:
            names.add(line.split("==")[0].split("[")[0].lower().replace("_", "-"))
    return names


def test_the_server_imports_only_what_the_runtime_requirements_install():
    import sys
    from importlib.metadata import packages_distributions

    runtime = _requirements("requirements.txt")
    assert not runtime & {"pytest", "playwright", "schemathesis", "hypothesis", "ruff", "uvicorn"}
    providers = packages_distributions()
    stdlib = sys.stdlib_module_names
    missing = set()
    for module, path in import_graph.modules(ROOT).items():
        for top in import_graph.third_party_imports(path):
            if top in stdlib or top in import_graph.PACKAGES or top == "bench":  # opt-in baselines
                continue
            dists = {d.lower().replace("_", "-") for d in providers.get(top, [])}
            if not dists & runtime:
                missing.add(f"{module} imports {top} ({', '.join(sorted(dists)) or 'not installed'})")
    # Django pulls in asgiref and sqlparse; channels-redis msgpack; psycopg its binary build.
    allowed_through_dependencies = {"asgiref", "msgpack", "twisted", "autobahn"}
    assert {
        m for m in missing if m.split(" imports ")[1].split(" ")[0] not in allowed_through_dependencies
    } == set()
