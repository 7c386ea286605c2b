"""The project's import graph, read from the source (ast), and the rules it must keep.

DESIGN.md's layers, top to bottom: config -> native_api -> live -> tokens, rooms -> foundation.
An import may point down, or stay inside its own package; tokens and rooms (the domain) may use
each other. Exceptions, as DESIGN.md allows them: management commands import anything, and an
app's admin modules (admin.py, admin_*.py) may look upward, but never close a circle.
native_client is a client library: it imports nothing of the server. Whatever the layer, no
circle between files (function-level imports count: a lazy import is still a dependency).

Used by tests/test_architecture.py on the real tree and on small trees made to break each rule.
"""

import ast
from dataclasses import dataclass
from pathlib import Path

LAYERS = {"config": 4, "native_api": 3, "live": 2, "tokens": 1, "rooms": 1, "foundation": 0}
CLIENT = "native_client"
PACKAGES = (*LAYERS, CLIENT)
SKIPPED_PARTS = {"migrations", "__pycache__"}


@dataclass(frozen=True)
class Edge:
    importer: str
    imported: str
    line: int

    def __str__(self):
        return f"{self.importer} -> {self.imported} (line {self.line})"


def modules(root: Path) -> dict[str, Path]:
    """Dotted module name -> file, for every module of the project's packages."""
    found = {}
    for package in PACKAGES:
        for path in sorted((root / package).rglob("*.py")) if (root / package).is_dir() else ():
            parts = path.relative_to(root).with_suffix("").parts
            if SKIPPED_PARTS & set(parts):
                continue
            if parts[-1] == "__init__":
                parts = parts[:-1]
            found[".".join(parts)] = path
    return found


def edges(root: Path) -> list[Edge]:
    """Every import of a project module by a project module, at any depth of the file."""
    known = modules(root)
    out = []
    for name, path in known.items():
        is_package = path.name == "__init__.py"
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            for target in _targets(node, name, is_package, known):
                resolved = _resolve(target, known)
                if resolved is not None and resolved != name:
                    out.append(Edge(name, resolved, node.lineno))
    return out


def _targets(node, importer: str, is_package: bool, known: dict) -> list[str]:
    if isinstance(node, ast.Import):
        return [alias.name for alias in node.names]
    if not isinstance(node, ast.ImportFrom):
        return []
    base = node.module or ""
    if node.level:
        package = importer.split(".") if is_package else importer.split(".")[:-1]
        package = package[: len(package) - (node.level - 1)]
        base = ".".join(package + ([base] if base else []))
    # ``from pkg import name``: a submodule when pkg.name is one, else an attribute of pkg.
    return [f"{base}.{alias.name}" if f"{base}.{alias.name}" in known else base for alias in node.names]


def _resolve(target: str, known: dict) -> str | None:
    parts = target.split(".")
    while parts:
        candidate = ".".join(parts)
        if candidate in known:
            return candidate
        parts.pop()
    return None


def is_exempt_from_layers(module: str) -> bool:
    parts = module.split(".")
    return "management" in parts or parts[-1] == "admin" or parts[-1].startswith("admin_")


def layer_violations(graph: list[Edge]) -> list[str]:
    problems = []
    for edge in dict.fromkeys(graph):
        top, target = edge.importer.split(".")[0], edge.imported.split(".")[0]
        if top == CLIENT or target == CLIENT:
            if top != target:
                problems.append(f"client and server import each other: {edge}")
            continue
        if top == target or is_exempt_from_layers(edge.importer):
            continue
        if LAYERS[target] >= LAYERS[top] and not (LAYERS[top] == LAYERS[target] == 1):
            problems.append(f"points up or sideways across layers: {edge}")
    return problems


def circles(graph: list[Edge]) -> list[list[str]]:
    """Strongly connected components of more than one module (Tarjan, iterative)."""
    succ: dict[str, set] = {}
    for edge in graph:
        succ.setdefault(edge.importer, set()).add(edge.imported)
        succ.setdefault(edge.imported, set())
    index, low, on_stack, stack, found = {}, {}, set(), [], []
    counter = 0
    for start in succ:
        if start in index:
            continue
        work = [(start, iter(sorted(succ[start])))]
        index[start] = low[start] = counter
        counter += 1
        stack.append(start)
        on_stack.add(start)
        while work:
            node, children = work[-1]
            child = next(children, None)
            if child is not None:
                if child not in index:
                    index[child] = low[child] = counter
                    counter += 1
                    stack.append(child)
                    on_stack.add(child)
                    work.append((child, iter(sorted(succ[child]))))
                elif child in on_stack:
                    low[node] = min(low[node], index[child])
                continue
            work.pop()
            if work:
                parent = work[-1][0]
                low[parent] = min(low[parent], low[node])
            if low[node] == index[node]:
                component = []
                while True:
                    member = stack.pop()
                    on_stack.discard(member)
                    component.append(member)
                    if member == node:
                        break
                if len(component) > 1:
                    found.append(sorted(component))
    return found


def third_party_imports(path: Path) -> set[str]:
    """Top-level names of absolute imports in a file (project packages included)."""
    names = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            names |= {alias.name.split(".")[0] for alias in node.names}
        elif isinstance(node, ast.ImportFrom) and not node.level and node.module:
            names.add(node.module.split(".")[0])
    return names
