"""Structural rules of the code base, read from the source (nothing is imported):

- no import cycle among the modules under include/ (``pawpaw``, ``lakefs_emulator``): every
  import counts, also the lazy ones inside functions, except those under ``if TYPE_CHECKING:``
  (they never run) and a module importing its own parent package (``pawpaw.x.y`` doing
  ``from pawpaw.x import z``: the package and its submodules are one unit);
- no module under include/ over 500 lines;
- the DAG files import, at module level (what the DAG processor runs on every parse), nothing
  from ``pawpaw`` but ``pawpaw.schema`` and ``pawpaw.config``, also through what they import
  (``pawpaw_airflow`` from plugins/): the heavy work is imported inside the tasks.

The checks are plain functions; the tests at the bottom run them on a planted tree to show
they catch what they are for.
"""

from __future__ import annotations

import ast
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

pytestmark = pytest.mark.unit

REPO = Path(__file__).resolve().parents[2]
INCLUDE = REPO / "include"
PLUGINS = REPO / "plugins"
DAGS = REPO / "dags"
MAX_LINES = 500
DAG_ALLOWED = frozenset({"pawpaw", "pawpaw.schema", "pawpaw.config"})


# --- reading the source -----------------------------------------------------------------------


@dataclass(frozen=True)
class Import:
    source: str  # the importing module, e.g. "pawpaw.train"
    target: str  # the module imported, as specific as known: "pawpaw.model.heads"
    path: Path  # the importing file
    line: int
    top_level: bool  # runs when the importing module is imported (not inside a function)

    def where(self, root: Path) -> str:
        return f"{self.path.relative_to(root)}:{self.line}"


def module_index(*roots: Path) -> dict[str, Path]:
    """Dotted module name -> file, for every .py under each root (a root holds top-level
    packages and modules, as a sys.path entry does)."""
    index: dict[str, Path] = {}
    for root in roots:
        for path in sorted(root.rglob("*.py")):
            parts = path.relative_to(root).with_suffix("").parts
            if any(p.startswith(".") or p == "__pycache__" for p in parts):
                continue
            if parts[-1] == "__init__":
                parts = parts[:-1]
            if parts:
                index[".".join(parts)] = path
    return index


def _is_type_checking(test: ast.expr) -> bool:
    return (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or (
        isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING"
    )


def _statements(
    body: Iterable[ast.stmt], in_function: bool = False
) -> Iterator[tuple[ast.stmt, bool]]:
    """Every statement with whether it sits inside a function; skips TYPE_CHECKING blocks."""
    for node in body:
        yield node, in_function
        if isinstance(node, ast.If) and _is_type_checking(node.test):
            yield from _statements(node.orelse, in_function)
            continue
        nested = isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef)
        for field in ("body", "orelse", "finalbody", "handlers", "cases"):
            for child in getattr(node, field, []) or []:
                if isinstance(child, ast.ExceptHandler | ast.match_case):
                    yield from _statements(child.body, in_function or nested)
                elif isinstance(child, ast.stmt):
                    yield from _statements([child], in_function or nested)


def _resolve(name: str, known: dict[str, Path]) -> str:
    """The longest known module that ``name`` names or lies in (else ``name`` itself)."""
    parts = name.split(".")
    for end in range(len(parts), 0, -1):
        candidate = ".".join(parts[:end])
        if candidate in known:
            return candidate
    return name


def imports_of(module: str, path: Path, known: dict[str, Path]) -> list[Import]:
    """What ``module`` (at ``path``) imports; ``from a import b`` counts ``a.b`` when that is a
    module. Relative imports are resolved."""
    tree = ast.parse(path.read_text(), filename=str(path))
    package = module if path.name == "__init__.py" else module.rpartition(".")[0]
    found: list[Import] = []
    for node, in_function in _statements(tree.body):
        names: list[str] = []
        if isinstance(node, ast.Import):
            names = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = package.split(".")
                anchor = anchor[: len(anchor) - (node.level - 1)]
                base = ".".join([*anchor, base] if base else anchor)
            names = [
                f"{base}.{alias.name}" if f"{base}.{alias.name}" in known else base
                for alias in node.names
            ]
        for name in dict.fromkeys(names):
            found.append(Import(module, _resolve(name, known), path, node.lineno, not in_function))
    return found


def import_graph(index: dict[str, Path], known: dict[str, Path] | None = None) -> list[Import]:
    """Every import between the modules of ``index``, less a module's imports of itself or of
    one of its parent packages."""
    known = known or index
    edges = []
    for module, path in index.items():
        for imp in imports_of(module, path, known):
            if imp.target in index and not (module + ".").startswith(imp.target + "."):
                edges.append(imp)
    return edges


# --- the checks -------------------------------------------------------------------------------


def find_cycles(edges: list[Import]) -> list[list[Import]]:
    """One cycle (as its import statements) per strongly connected group of modules."""
    graph: dict[str, dict[str, Import]] = {}
    for e in edges:
        graph.setdefault(e.source, {}).setdefault(e.target, e)
        graph.setdefault(e.target, {})
    # Tarjan's strongly connected components (iterative: no recursion limit on big graphs).
    counter, stack, on_stack = 0, [], set()
    order: dict[str, int] = {}
    low: dict[str, int] = {}
    groups: list[list[str]] = []
    for start in sorted(graph):
        if start in order:
            continue
        work = [(start, iter(sorted(graph[start])))]
        order[start] = low[start] = counter
        counter += 1
        stack.append(start)
        on_stack.add(start)
        while work:
            node, children = work[-1]
            child = next(children, None)
            if child is None:
                work.pop()
                if work:
                    low[work[-1][0]] = min(low[work[-1][0]], low[node])
                if low[node] == order[node]:
                    group = []
                    while True:
                        member = stack.pop()
                        on_stack.discard(member)
                        group.append(member)
                        if member == node:
                            break
                    if len(group) > 1 or node in graph[node]:
                        groups.append(sorted(group))
            elif child not in order:
                order[child] = low[child] = counter
                counter += 1
                stack.append(child)
                on_stack.add(child)
                work.append((child, iter(sorted(graph[child]))))
            elif child in on_stack:
                low[node] = min(low[node], order[child])
    return [_cycle_in(graph, set(group), group[0]) for group in groups]


def _cycle_in(graph: dict[str, dict[str, Import]], group: set[str], start: str) -> list[Import]:
    """A shortest cycle through ``start`` inside its component (breadth-first)."""
    paths: dict[str, list[Import]] = {start: []}
    queue = [start]
    while queue:
        node = queue.pop(0)
        for child, edge in sorted(graph[node].items()):
            if child == start:
                return [*paths[node], edge]
            if child in group and child not in paths:
                paths[child] = [*paths[node], edge]
                queue.append(child)
    raise AssertionError(f"no cycle through {start}")  # a component always has one


def describe_cycle(cycle: list[Import], root: Path) -> str:
    chain = " -> ".join([cycle[0].source, *(e.target for e in cycle)])
    return f"{chain}  ({', '.join(e.where(root) for e in cycle)})"


def oversized(root: Path, limit: int = MAX_LINES) -> list[tuple[str, int]]:
    """(path relative to root, line count) of every .py module over ``limit`` lines."""
    found = []
    for path in sorted(root.rglob("*.py")):
        if "__pycache__" in path.parts:
            continue
        lines = len(path.read_text().splitlines())
        if lines > limit:
            found.append((str(path.relative_to(root)), lines))
    return found


def heavy_dag_imports(
    dags: Path, known: dict[str, Path], allowed: frozenset[str] = DAG_ALLOWED, root: Path = REPO
) -> list[str]:
    """Each module-level import chain from a DAG file to a ``pawpaw`` module not in
    ``allowed``, e.g. ``dags/x.py:3 pawpaw_airflow -> plugins/...:5 pawpaw.train``."""
    problems = []
    for dag_file in sorted(dags.glob("*.py")):
        start = f"<dag {dag_file.name}>"
        # Breadth-first over module-level imports; importing a.b.c also runs a and a.b.
        seen: dict[str, str] = {start: ""}
        queue: list[tuple[str, Path]] = [(start, dag_file)]
        while queue:
            module, path = queue.pop(0)
            for imp in imports_of(module, path, known):
                if not imp.top_level:
                    continue
                parts = imp.target.split(".")
                for end in range(1, len(parts) + 1):
                    target = ".".join(parts[:end])
                    if target in seen:
                        continue
                    seen[target] = f"{seen[module]} {imp.where(root)} -> {target}".strip()
                    is_pawpaw = target == "pawpaw" or target.startswith("pawpaw.")
                    if is_pawpaw and target not in allowed:
                        problems.append(f"{dag_file.name}: {seen[target]}")
                    elif target in known and target != module:
                        queue.append((target, known[target]))
    return problems


# --- the rules, on the real tree --------------------------------------------------------------


def test_no_import_cycle_under_include() -> None:
    cycles = find_cycles(import_graph(module_index(INCLUDE)))
    assert not cycles, "import cycles under include/:\n" + "\n".join(
        describe_cycle(c, REPO) for c in cycles
    )


def test_no_module_under_include_over_500_lines() -> None:
    big = oversized(INCLUDE)
    assert not big, f"modules over {MAX_LINES} lines (split them):\n" + "\n".join(
        f"include/{path}: {lines} lines" for path, lines in big
    )


def test_dags_import_only_schema_and_config_from_pawpaw_at_module_level() -> None:
    known = module_index(INCLUDE, PLUGINS)
    problems = heavy_dag_imports(DAGS, known)
    assert not problems, (
        f"DAG files reach pawpaw modules other than {sorted(DAG_ALLOWED)} at parse time "
        "(move the import into the task):\n" + "\n".join(problems)
    )


def test_the_checks_see_the_real_tree() -> None:
    """Guards against checks that pass because they read nothing."""
    index = module_index(INCLUDE)
    assert {"pawpaw.config", "pawpaw.train", "lakefs_emulator"} <= set(index)
    edges = import_graph(index)
    assert len(edges) > 50
    assert any(e.top_level for e in edges) and any(not e.top_level for e in edges)
    assert oversized(INCLUDE, limit=10)
    # With nothing allowed, the DAG's own module-level `pawpaw.config` import is reported.
    reported = heavy_dag_imports(DAGS, module_index(INCLUDE, PLUGINS), allowed=frozenset())
    assert any(line.endswith("-> pawpaw.config") for line in reported), reported


# --- the checks catch what they are for (a planted tree) --------------------------------------


def _write(root: Path, files: dict[str, str]) -> Path:
    for name, text in files.items():
        path = root / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
    return root


def test_a_planted_cycle_is_found_and_named(tmp_path: Path) -> None:
    root = _write(
        tmp_path,
        {
            "pkg/__init__.py": "from pkg.a import A\n",  # package -> submodule: fine
            "pkg/a.py": "import pkg.b\nA = 1\n",
            "pkg/b.py": "from typing import TYPE_CHECKING\nfrom pkg import c\n"
            "if TYPE_CHECKING:\n    import pkg.a\n",
            "pkg/c.py": "from pkg import A\n\n\ndef f():\n    from .a import A\n    return A\n",
            "pkg/d.py": "import pkg.c\nimport os\n",  # into the cycle, not part of it
            "other/__init__.py": "",
            "other/x.py": "from other import y\n",
            "other/y.py": "from . import x\n",
        },
    )
    cycles = find_cycles(import_graph(module_index(root)))
    described = sorted(describe_cycle(c, root) for c in cycles)
    assert described == [
        "other.x -> other.y -> other.x  (other/x.py:1, other/y.py:1)",
        "pkg.a -> pkg.b -> pkg.c -> pkg.a  (pkg/a.py:1, pkg/b.py:2, pkg/c.py:5)",
    ]
    # Without the lazy import in c the cycle is gone: TYPE_CHECKING and parent imports don't count.
    (root / "pkg/c.py").write_text("from pkg import A\n")
    assert [describe_cycle(c, root) for c in find_cycles(import_graph(module_index(root)))] == [
        "other.x -> other.y -> other.x  (other/x.py:1, other/y.py:1)"
    ]


def test_a_planted_long_module_is_named_with_its_length(tmp_path: Path) -> None:
    root = _write(
        tmp_path,
        {
            "pkg/__init__.py": "",
            "pkg/ok.py": "x = 1\n" * MAX_LINES,
            "pkg/sub/long.py": "x = 1\n" * (MAX_LINES + 1),
        },
    )
    assert oversized(root) == [("pkg/sub/long.py", MAX_LINES + 1)]


def test_heavy_dag_imports_are_named_with_the_chain(tmp_path: Path) -> None:
    root = _write(
        tmp_path,
        {
            "include/pawpaw/__init__.py": "",
            "include/pawpaw/config.py": "from pawpaw import schema\n",
            "include/pawpaw/schema.py": "import json\n",
            "include/pawpaw/train.py": "import torch\n",
            "include/pawpaw/pipeline.py": "def f():\n    from pawpaw import train\n",
            "plugins/helper/__init__.py": "from helper.settings import s\n",
            "plugins/helper/settings.py": "from pawpaw.pipeline import f\n\n\ndef s():\n    pass\n",
            "dags/good.py": "import pawpaw.config\nfrom pawpaw.schema import X\n\n\n"
            "def task():\n    from pawpaw import train\n",
            "dags/direct.py": "from pawpaw import config, train\n",
            "dags/indirect.py": "import os\n\nfrom helper import s\n",
        },
    )
    known = module_index(root / "include", root / "plugins")
    problems = heavy_dag_imports(root / "dags", known, root=root)
    assert problems == [
        "direct.py: dags/direct.py:1 -> pawpaw.train",
        "indirect.py: dags/indirect.py:3 -> helper plugins/helper/__init__.py:1 -> helper.settings"
        " plugins/helper/settings.py:1 -> pawpaw.pipeline",
    ]
