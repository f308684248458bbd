"""The package's import structure (issue 15): no circles, no forbidden arrows, no long modules.

Every module of ``src/robustkd`` is parsed (``ast``, nothing is imported), counting the imports
inside functions and relative imports too. ``import a.b`` is an arrow to ``a.b``;
``from pkg import name`` is an arrow to ``pkg.name`` when that is a module, else to ``pkg``.
Only arrows between robustkd's own modules count (``typing.TYPE_CHECKING`` blocks included).

The rules: the shared engine knows no study (no arrow from ``robustkd.engine*`` to
``robustkd.craft*``); the report only reads and draws (none from ``robustkd.report*`` to
``robustkd.engine*``); no import circle; no module over :data:`MAX_LINES` lines unless
:data:`LONG_MODULES` says why it must be.
"""

from __future__ import annotations

import ast
from collections.abc import Iterable, Mapping
from pathlib import Path

import networkx as nx
import pytest

SRC = Path(__file__).resolve().parents[1] / "src"
MAX_LINES = 400
# Module -> why it must be longer than MAX_LINES (none today).
LONG_MODULES: dict[str, str] = {}
# (importer prefix, imported prefix, why the arrow is forbidden).
FORBIDDEN = (
    ("robustkd.engine", "robustkd.craft", "the shared engine must know no study"),
    ("robustkd.report", "robustkd.engine", "the report reads metrics and draws; it runs no job"),
)


def modules(src: Path = SRC, package: str = "robustkd") -> dict[str, Path]:
    """Dotted name -> file of every module of ``package`` under ``src``."""
    found = {}
    for path in sorted((src / package).rglob("*.py")):
        parts = path.relative_to(src).with_suffix("").parts
        if parts[-1] == "__init__":
            parts = parts[:-1]
        found[".".join(parts)] = path
    return found


def import_graph(mods: Mapping[str, Path]) -> dict[str, set[str]]:
    """Module -> the package's modules it imports anywhere in its file (itself excluded)."""
    edges: dict[str, set[str]] = {m: set() for m in mods}
    for name, path in mods.items():
        package = name if path.name == "__init__.py" else name.rpartition(".")[0]
        for node in ast.walk(ast.parse(path.read_text(), filename=str(path))):
            if isinstance(node, ast.Import):
                targets = [alias.name for alias in node.names]
            elif isinstance(node, ast.ImportFrom):
                if node.level:
                    base = package.split(".")[: len(package.split(".")) - node.level + 1]
                    origin = ".".join(base + ([node.module] if node.module else []))
                else:
                    origin = node.module or ""
                targets = [
                    f"{origin}.{alias.name}" if f"{origin}.{alias.name}" in mods else origin
                    for alias in node.names
                ]
            else:
                continue
            edges[name] |= {t for t in targets if t in mods and t != name}
    return edges


def _within(name: str, prefix: str) -> bool:
    return name == prefix or name.startswith(prefix + ".")


def strongly_connected(edges: Mapping[str, Iterable[str]]) -> list[list[str]]:
    """The graph's strongly connected components of more than one module, each sorted."""
    found = nx.strongly_connected_components(nx.DiGraph({v: sorted(w) for v, w in edges.items()}))
    return sorted(sorted(c) for c in found if len(c) > 1)


def a_cycle(edges: Mapping[str, Iterable[str]], component: list[str]) -> list[str]:
    """One shortest circle through the component's first module: ``[a, b, ..., a]``."""
    start = component[0]
    sub = nx.DiGraph({v: sorted(w) for v, w in edges.items()}).subgraph(component)
    paths = [nx.shortest_path(sub, start, p) for p in sorted(sub.predecessors(start))]
    return [*min(paths, key=len), start]


def cycle_problems(edges: Mapping[str, Iterable[str]]) -> list[str]:
    """Each import circle: its modules and one circle through them."""
    return [
        f"{len(c)} modules import each other: {', '.join(c)}; e.g. {' -> '.join(a_cycle(edges, c))}"
        for c in strongly_connected(edges)
    ]


def arrow_problems(edges: Mapping[str, Iterable[str]]) -> list[str]:
    """Each forbidden arrow, with the rule it breaks."""
    return [
        f"{a} imports {b} ({why})"
        for src, dst, why in FORBIDDEN
        for a in sorted(edges)
        if _within(a, src)
        for b in sorted(edges[a])
        if _within(b, dst)
    ]


def length_problems(mods: Mapping[str, Path], src: Path = SRC) -> list[str]:
    """Each module over MAX_LINES lines that LONG_MODULES does not excuse."""
    counts = {name: len(path.read_text().splitlines()) for name, path in mods.items()}
    return [
        f"{name} ({mods[name].relative_to(src)}): {n} lines > {MAX_LINES}"
        for name, n in sorted(counts.items())
        if n > MAX_LINES and name not in LONG_MODULES
    ]


@pytest.fixture(scope="module")
def graph() -> dict[str, set[str]]:
    return import_graph(modules())


def test_the_parser_sees_every_kind_of_import(tmp_path):
    """A planted package: absolute, relative, in-function and ``from pkg import module``."""
    pkg = tmp_path / "robustkd"
    files = {
        "__init__.py": "",
        "a.py": "from robustkd.sub import b\n",
        "sub/__init__.py": "from .b import thing\n",
        "sub/b.py": "def f():\n    from ..c import g\n    return g\nthing = 1\n",
        "c.py": "import robustkd.a\nfrom robustkd.sub import thing\ndef g():\n    pass\n",
        "engine/__init__.py": "",
        "engine/x.py": "from robustkd.craft import y\n",
        "craft/__init__.py": "from . import y\n",
        "craft/y.py": "",
    }
    for rel, text in files.items():
        (pkg / rel).parent.mkdir(parents=True, exist_ok=True)
        (pkg / rel).write_text(text)
    (pkg / "long.py").write_text("x = 1\n" * (MAX_LINES + 1))
    mods = modules(tmp_path)
    edges = import_graph(mods)
    assert edges["robustkd.a"] == {"robustkd.sub.b"}
    assert edges["robustkd.sub"] == {"robustkd.sub.b"}
    assert edges["robustkd.sub.b"] == {"robustkd.c"}
    assert edges["robustkd.c"] == {"robustkd.a", "robustkd.sub"}
    assert edges["robustkd.craft"] == {"robustkd.craft.y"}
    (circle,) = cycle_problems(edges)
    assert (
        "4 modules import each other: robustkd.a, robustkd.c, robustkd.sub, robustkd.sub.b"
        in circle
    )
    assert "robustkd.a -> robustkd.sub.b -> robustkd.c -> robustkd.a" in circle
    assert arrow_problems(edges) == [
        "robustkd.engine.x imports robustkd.craft.y (the shared engine must know no study)"
    ]
    assert length_problems(mods, tmp_path) == [
        f"robustkd.long (robustkd/long.py): 401 lines > {MAX_LINES}"
    ]


def test_no_import_circle(graph):
    problems = cycle_problems(graph)
    assert not problems, "import circles among robustkd's modules:\n" + "\n".join(problems)


def test_engine_does_not_import_craft(graph):
    problems = [p for p in arrow_problems(graph) if p.startswith("robustkd.engine")]
    assert not problems, "\n".join(problems)


def test_report_does_not_import_engine(graph):
    problems = [p for p in arrow_problems(graph) if p.startswith("robustkd.report")]
    assert not problems, "\n".join(problems)


def test_no_module_over_the_line_limit():
    problems = length_problems(modules())
    assert not problems, (
        f"modules over {MAX_LINES} lines (split them, or say why in LONG_MODULES):\n"
        + "\n".join(problems)
    )


def test_long_module_allowances_are_live():
    """Every excused module exists and is still long: a stale excuse is removed."""
    mods = modules()
    stale = [
        m
        for m in LONG_MODULES
        if m not in mods or len(mods[m].read_text().splitlines()) <= MAX_LINES
    ]
    assert not stale, f"LONG_MODULES excuses modules that are gone or short now: {stale}"
