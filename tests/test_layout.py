"""The layout keeps its promises: models/ has no import circles, rooms import only rooms below them,
and the core never imports the web app, the CLI or the agents.

Every import counts, including the ones inside functions: a late import still ties two modules.
"""

from __future__ import annotations

import ast
from pathlib import Path

import models

MODELS = Path(models.__file__).resolve().parent


def module_name(path: Path) -> str:
    parts = list(path.relative_to(MODELS.parent).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def imported_modules(path: Path, known: set[str]) -> set[str]:
    """Modules of ours that ``path`` imports; ``from pkg import sub`` counts as importing ``pkg.sub``."""
    name = module_name(path)
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")[: len(package.split(".")) - (node.level - 1)]
                target = ".".join(base + ([node.module] if node.module else []))
            else:
                target = node.module or ""
            subs = {f"{target}.{alias.name}" for alias in node.names}
            found.update(subs & known or {target})
    return found


def import_graph() -> dict[str, set[str]]:
    files = sorted(MODELS.rglob("*.py"))
    known = {module_name(p) for p in files}
    return {module_name(p): imported_modules(p, known) for p in files}


def test_core_imports_no_web_cli_or_agents():
    bad = {
        f"{mod} imports {dep}"
        for mod, deps in import_graph().items()
        for dep in deps
        if dep.split(".")[0] in ("web", "cli", "agents", "bench", "tests")
    }
    assert not bad, sorted(bad)


def find_cycle(graph: dict[str, set[str]]) -> list[str] | None:
    state: dict[str, int] = {}  # 1: on the current path, 2: done
    path: list[str] = []

    def visit(node: str) -> list[str] | None:
        state[node] = 1
        path.append(node)
        for dep in sorted(graph.get(node, ())):
            if dep not in graph:
                continue
            if state.get(dep) == 1:
                return [*path[path.index(dep) :], dep]
            if dep not in state and (cycle := visit(dep)):
                return cycle
        path.pop()
        state[node] = 2
        return None

    for node in sorted(graph):
        if node not in state and (cycle := visit(node)):
            return cycle
    return None


def test_no_import_cycles_in_models():
    cycle = find_cycle(import_graph())
    assert cycle is None, "import cycle: " + " -> ".join(cycle or [])


def test_find_cycle_finds_one():
    assert find_cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}}) == ["a", "b", "c", "a"]
    assert find_cycle({"a": {"b"}, "b": set()}) is None


def room_of(module: str) -> str:
    """``models.artifacts.local`` -> ``artifacts``; a top-level module is its own room."""
    return module.split(".")[1] if module.count(".") >= 1 else "models"


def test_rooms_import_only_rooms_below_them():
    order = models.ROOMS
    assert set(models.FOUNDATION) | set(order) | set(models.TOP) | {"models"} >= {
        room_of(m) for m in import_graph()
    }, "every module of models/ belongs to a room named in models/__init__.py"
    rank = {room: i for i, room in enumerate(order)}
    problems = []
    for mod, deps in import_graph().items():
        room = room_of(mod)
        for dep in deps:
            if not dep.startswith("models.") or room_of(dep) == room:
                continue
            target = room_of(dep)
            if room in models.TOP:
                continue
            if room in models.FOUNDATION:
                if target not in models.FOUNDATION:
                    problems.append(f"foundation module {mod} imports {dep}")
            elif target in models.FOUNDATION:
                continue
            elif target in models.TOP or rank.get(target, len(order)) >= rank[room]:
                problems.append(f"{mod} (room {room}) imports {dep} (room {target}), which is not below it")
    assert not problems, "\n".join(sorted(problems))


def test_every_room_says_what_it_holds():
    for room in models.ROOMS:
        doc = ast.get_docstring(ast.parse((MODELS / room / "__init__.py").read_text()))
        assert doc and "May import" in doc and "Public names" in doc, f"models/{room}/__init__.py docstring"


# ---------------------------------------------------------------- who touches MongoDB collections

PROJECT = MODELS.parent
# The Database attributes that are collections (models/store/db.py), and the ways to reach any other.
COLLECTION_ATTRIBUTES = {"configs", "runs", "ensembles", "jobs", "locks"}
COLLECTION_CALLS = {"get_collection", "get_database"}
# GridFS is the artifact store's own backend (one place for artifact I/O), not a document collection.
# The web app's credentials and sessions are being moved out of MongoDB (issue 24); until then they
# are the one other exemption.
ALLOWED_OUTSIDE_STORE = {"models/artifacts/gridfs.py"}


def raw_collection_uses(source: str) -> list[tuple[int, str]]:
    """``(line, code)`` of every direct use of a MongoDB collection in ``source``: a Database's collection
    attribute (``database.configs``), a subscript of a client or database (``db["x"]``, ``client["db"]``),
    or ``get_collection``/``get_database``."""
    found = []
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Attribute) and node.attr in COLLECTION_ATTRIBUTES:
            base = node.value
            if isinstance(base, ast.Name) and base.id == "models":  # ``models.jobs`` is the package
                continue
            found.append((node.lineno, ast.unparse(node)))
        elif (
            isinstance(node, ast.Subscript)
            and isinstance(node.value, ast.Attribute)
            and node.value.attr
            in (
                "db",
                "client",
            )
        ):
            found.append((node.lineno, ast.unparse(node)))
        elif (
            isinstance(node, ast.Call)
            and isinstance(node.func, ast.Attribute)
            and node.func.attr in COLLECTION_CALLS
        ):
            found.append((node.lineno, ast.unparse(node.func)))
    return found


def test_only_the_store_touches_collections():
    problems = []
    for folder in ("models", "web", "cli", "agents"):
        for path in sorted((PROJECT / folder).rglob("*.py")):
            rel = path.relative_to(PROJECT).as_posix()
            if rel.startswith("models/store/") or rel in ALLOWED_OUTSIDE_STORE:
                continue
            problems += [f"{rel}:{line}: {code}" for line, code in raw_collection_uses(path.read_text())]
    assert not problems, "collections are touched only in models/store/ (its store classes):\n" + "\n".join(
        problems
    )


def test_the_collection_check_finds_raw_access():
    code = (
        "def f(database, client):\n"
        "    database.configs.find_one({})\n"
        "    database.db['x'].insert_one({})\n"
        "    client['db'].get_collection('y')\n"
        "    from models import jobs\n"
        "    jobs.submit()\n"
    )
    found = [c for _, c in raw_collection_uses(code)]
    assert "database.configs" in found and "database.db['x']" in found
    assert any("get_collection" in c for c in found) and any(c.startswith("client[") for c in found)
    assert not any(c == "jobs.submit" for c in found)
