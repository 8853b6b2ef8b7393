"""The import graph of the daemon's packages: rooms, not a web (issue 10, acceptance 1).

Every module of receivers/, processors/, connectors/, exporters/, extensions/ and pipeline/ is
parsed (ast, nothing imported), and every `import` in it counts, at module level or inside a
function (a lazy import is still a dependency; only `if TYPE_CHECKING:` blocks are left out of
the cycle check, since they never run):

(a) a component is `<kind>/<name>` (a module or a package, e.g. `exporters/kafka`,
    `connectors/triggers`); no module of one component imports another component. Shared
    helper rooms (`SHARED`) are listed here by name: any component of their kind may import
    them, and they import no component themselves (another helper room of their kind, yes);
(b) pipeline/ imports no component and no helper room, except `pipeline/registry.py`, the one
    list of factories, which imports each component's package root and nothing deeper;
(c) no import cycle among the modules; the failure names every module of the cycle, in order.
"""
from __future__ import annotations

import ast
from dataclasses import dataclass
from functools import cache
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
KINDS = ("receivers", "processors", "connectors", "exporters", "extensions")
# Helper rooms shared by the components of one kind, like otelcol's exporterhelper. They are
# not components: they hold no factory, and they must not import any component.
SHARED = frozenset({"exporters.helper", "exporters.clickhousehelper"})
REGISTRY = "pipeline.registry"


@dataclass(frozen=True)
class Import:
    source: str  # the importing module
    target: str  # the imported module (the longest dotted prefix that is one of ours)
    line: int
    runs: bool  # False under `if TYPE_CHECKING:`


def module_name(path: Path) -> str:
    parts = list(path.relative_to(ROOT).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


@cache
def modules() -> dict[str, Path]:
    found: dict[str, Path] = {}
    for top in (*KINDS, "pipeline"):
        for path in sorted((ROOT / top).rglob("*.py")):
            found[module_name(path)] = path
    return found


def is_package(name: str, known: dict[str, Path]) -> bool:
    return known[name].name == "__init__.py"


def resolve(name: str, known: dict[str, Path]) -> str | None:
    """The module `name` refers to: itself, or the nearest enclosing module of ours (a name in it)."""
    while name:
        if name in known:
            return name
        name = name.rpartition(".")[0]
    return None


def _type_checking(node: ast.If) -> bool:
    test = node.test
    return (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or (
        isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING")


def _absolute(source: str, node: ast.ImportFrom, known: dict[str, Path]) -> str:
    if not node.level:
        return node.module or ""
    base = source.split(".")
    if not is_package(source, known):
        base = base[:-1]
    base = base[:len(base) - (node.level - 1)]
    return ".".join([*base, *([node.module] if node.module else [])])


def imports_of(source: str, known: dict[str, Path]) -> list[Import]:
    tree = ast.parse(known[source].read_text(), str(known[source]))
    found: list[Import] = []

    def add(name: str, line: int, runs: bool) -> None:
        target = resolve(name, known)
        if target is not None and target != source:
            found.append(Import(source, target, line, runs))

    def visit(node: ast.AST, runs: bool) -> None:
        for child in ast.iter_child_nodes(node):
            if isinstance(child, ast.If) and _type_checking(child):
                for stmt in child.body:
                    visit_statement(stmt, False)
                for stmt in child.orelse:
                    visit_statement(stmt, runs)
                continue
            visit_statement(child, runs)

    def visit_statement(node: ast.AST, runs: bool) -> None:
        if isinstance(node, ast.Import):
            for alias in node.names:
                add(alias.name, node.lineno, runs)
        elif isinstance(node, ast.ImportFrom):
            base = _absolute(source, node, known)
            for alias in node.names:  # `from pkg import submodule` imports the submodule
                add(f"{base}.{alias.name}" if f"{base}.{alias.name}" in known else base, node.lineno, runs)
        else:
            visit(node, runs)

    visit(tree, True)
    return found


@cache
def graph() -> list[Import]:
    known = modules()
    return [edge for name in known for edge in dict.fromkeys(imports_of(name, known))]  # one per line


def room(module: str) -> str | None:
    """The component or shared room a module belongs to (`exporters.kafka`), None for pipeline/."""
    parts = module.split(".")
    if parts[0] not in KINDS or len(parts) < 2:
        return None
    return ".".join(parts[:2])


def where(edge: Import) -> str:
    return f"{edge.source} (line {edge.line}) imports {edge.target}"


def component_violations(edges: list[Import]) -> list[str]:
    wrong = []
    for edge in edges:
        source, target = room(edge.source), room(edge.target)
        if source is None or target is None or source == target:
            continue
        if source in SHARED and target not in SHARED:
            wrong.append(f"{where(edge)}: the shared room {source} imports a component")
        elif target not in SHARED:
            wrong.append(f"{where(edge)}: component {source} imports component {target}")
        elif target.split(".")[0] != source.split(".")[0]:
            wrong.append(f"{where(edge)}: {target} is shared by {target.split('.')[0]}/ only")
    return wrong


def pipeline_violations(edges: list[Import], known: dict[str, Path]) -> list[str]:
    wrong = []
    for edge in edges:
        if not edge.source.startswith("pipeline") or room(edge.target) is None:
            continue
        if edge.source != REGISTRY:
            wrong.append(f"{where(edge)}: pipeline/ imports no component (only {REGISTRY} lists them)")
        elif room(edge.target) in SHARED or edge.target != room(edge.target):
            wrong.append(f"{where(edge)}: the registry imports factories from component package roots only")
    return wrong


def find_cycle(edges: list[Import]) -> list[str] | None:
    """One import cycle as [a, b, ..., a], or None (iterative depth-first search)."""
    after: dict[str, list[str]] = {}
    for edge in edges:
        if edge.runs:
            after.setdefault(edge.source, []).append(edge.target)
    state: dict[str, int] = {}  # 1 = on the current path, 2 = done
    for start in sorted(after):
        if state.get(start):
            continue
        path, stack = [start], [iter(sorted(set(after.get(start, []))))]
        state[start] = 1
        while stack:
            nxt = next(stack[-1], None)
            if nxt is None:
                state[path.pop()] = 2
                stack.pop()
            elif state.get(nxt) == 1:
                return [*path[path.index(nxt):], nxt]
            elif not state.get(nxt):
                state[nxt] = 1
                path.append(nxt)
                stack.append(iter(sorted(set(after.get(nxt, [])))))
    return None


# -- the checker checks: small trees it must judge right -------------------------------------------

def edges_of(*pairs: tuple[str, str]) -> list[Import]:
    return [Import(source, target, 1, True) for source, target in pairs]


def test_the_checker_sees_a_component_importing_another_and_a_shared_room_importing_one() -> None:
    wrong = component_violations(edges_of(
        ("connectors.triggers.detectors.x", "processors.genai.prices"),
        ("exporters.chdb", "exporters.helper.queued"),
        ("exporters.helper.queued", "exporters.kafka"),
        ("exporters.clickhousehelper.exporter", "exporters.helper.isolate"),
        ("exporters.kafka.split", "exporters.kafka"),
        ("extensions.explorer.api", "exporters.helper"),
    ))
    assert wrong == [
        "connectors.triggers.detectors.x (line 1) imports processors.genai.prices: "
        "component connectors.triggers imports component processors.genai",
        "exporters.helper.queued (line 1) imports exporters.kafka: "
        "the shared room exporters.helper imports a component",
        "extensions.explorer.api (line 1) imports exporters.helper: exporters.helper is shared by exporters/ only",
    ]


def test_the_checker_lets_only_the_registry_import_components_and_only_their_roots() -> None:
    known = {name: Path(f"{name}.py") for name in (
        "pipeline.cli", "pipeline.registry", "exporters.chdb", "exporters.helper.queued", "exporters.kafka.split")}
    wrong = pipeline_violations(edges_of(
        ("pipeline.registry", "exporters.chdb"), ("pipeline.registry", "exporters.kafka.split"),
        ("pipeline.cli", "exporters.chdb"), ("pipeline.cli", "pipeline.registry")), known)
    assert wrong == [
        "pipeline.registry (line 1) imports exporters.kafka.split: "
        "the registry imports factories from component package roots only",
        "pipeline.cli (line 1) imports exporters.chdb: "
        "pipeline/ imports no component (only pipeline.registry lists them)",
    ]


def test_the_checker_names_the_whole_cycle_and_skips_type_checking_imports() -> None:
    cycle = edges_of(("pipeline.registry", "exporters.chdb_query"), ("exporters.chdb_query", "pipeline.service"),
                     ("pipeline.service", "pipeline.graph"), ("pipeline.graph", "pipeline.registry"),
                     ("pipeline.cli", "pipeline.registry"))
    assert find_cycle(cycle) == ["exporters.chdb_query", "pipeline.service", "pipeline.graph",
                                 "pipeline.registry", "exporters.chdb_query"]
    assert find_cycle(cycle[:3]) is None
    typing_only = [*cycle[:3], Import("pipeline.graph", "pipeline.registry", 1, False)]
    assert find_cycle(typing_only) is None


def test_the_parser_resolves_relative_and_lazy_imports_and_type_checking_blocks(tmp_path: Path) -> None:
    known = modules()
    edges = {(e.target, e.runs) for e in imports_of(REGISTRY, known)}
    assert ("pipeline.component", True) in edges  # module level
    assert ("exporters.kafka", True) in edges  # inside factories()


# -- the tree -------------------------------------------------------------------------------------

def test_no_component_imports_another_component() -> None:
    wrong = component_violations(graph())
    assert not wrong, "imports across components:\n" + "\n".join(wrong)


def test_pipeline_imports_no_component_except_the_registry_of_factories() -> None:
    wrong = pipeline_violations(graph(), modules())
    assert not wrong, "pipeline/ reaching into components:\n" + "\n".join(wrong)


def test_there_is_no_import_cycle() -> None:
    cycle = find_cycle(graph())
    assert cycle is None, "import cycle: " + " -> ".join(cycle or [])


def test_every_shared_room_exists_and_holds_no_factory() -> None:
    known = modules()
    for name in sorted(SHARED):
        assert name in known and is_package(name, known), f"{name} is listed as shared but is not a package"
        for module in (m for m in known if m == name or m.startswith(name + ".")):
            tree = ast.parse(known[module].read_text())
            assigned = {t.id for n in ast.walk(tree) if isinstance(n, ast.Assign)
                        for t in n.targets if isinstance(t, ast.Name)}
            assert "factory" not in assigned, f"{module} defines a component factory: a shared room must not"


def test_no_import_hides_from_this_check() -> None:
    """`importlib.import_module(...)` / `__import__(...)` would be an edge the graph above cannot see."""
    hidden = []
    for name, path in modules().items():
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Call):
                func = node.func
                called = func.attr if isinstance(func, ast.Attribute) else getattr(func, "id", "")
                if called in ("import_module", "__import__"):
                    hidden.append(f"{name} (line {node.lineno}) imports by name")
    assert not hidden, "\n".join(hidden)
