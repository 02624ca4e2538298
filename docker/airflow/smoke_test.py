"""Import every third-party module that the pipeline's code imports, as the tasks do.

    python smoke_test.py [--list] [--pins FILE] [--also MODULE]... ROOT...

Reads every ``*.py`` under each ROOT (the ``pawpaw`` package, the Airflow plugins, the DAGs)
and collects the modules it imports, including the lazy imports inside functions (the
pipeline's tasks import nannyml, mlflow, bentoml, lakefs, torch, timm, onnxruntime... only
when they run), then imports each one. Skipped: the standard library, the scanned code's own
modules, ``if TYPE_CHECKING:`` blocks; imports guarded by ``except ImportError`` are tried but
may fail. ``--also`` names modules loaded by name rather than by an import statement (the
backbone's weights package, the SQLAlchemy driver of a ``postgresql+psycopg2://`` URL).
``--pins`` (the image's ``pins.txt``) first checks that every locked distribution is installed
at its locked version and that ``pip check`` finds no unmet requirement of any of them (the
base image's own extra packages are reported, not judged). Run by
docker/airflow/Dockerfile at build time (an image whose drift task would die
on ``import nannyml`` -- lightgbm needs the system ``libgomp.so.1`` -- fails to build), and
by tests/unit/test_docker_image.py with ``--list`` against the image's locked package set.
"""

from __future__ import annotations

import argparse
import ast
import importlib
import re
import subprocess
import sys
import time
from pathlib import Path


def _is_type_checking(test: ast.expr) -> bool:
    return (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or (
        isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING"
    )


def _guards_import_error(node: ast.Try) -> bool:
    for handler in node.handlers:
        names = handler.type.elts if isinstance(handler.type, ast.Tuple) else [handler.type]
        if any(isinstance(n, ast.Name) and n.id in {"ImportError", "ModuleNotFoundError"}
               for n in names):  # fmt: skip
            return True
    return False


class _Imports(ast.NodeVisitor):
    def __init__(self) -> None:
        self.required: set[str] = set()
        self.optional: set[str] = set()
        self._optional_depth = 0

    def _add(self, module: str) -> None:
        (self.optional if self._optional_depth else self.required).add(module)

    def visit_If(self, node: ast.If) -> None:
        if _is_type_checking(node.test):
            for child in node.orelse:
                self.visit(child)
            return
        self.generic_visit(node)

    def visit_Try(self, node: ast.Try) -> None:
        optional = _guards_import_error(node)
        self._optional_depth += optional
        for child in node.body:
            self.visit(child)
        self._optional_depth -= optional
        for child in [*node.handlers, *node.orelse, *node.finalbody]:
            self.visit(child)

    def visit_Import(self, node: ast.Import) -> None:
        for alias in node.names:
            self._add(alias.name)

    def visit_ImportFrom(self, node: ast.ImportFrom) -> None:
        if node.level == 0 and node.module:
            self._add(node.module)


def scan(roots: list[Path]) -> tuple[list[str], list[str]]:
    """(required, optional) third-party modules imported under ``roots``, sorted."""
    visitor = _Imports()
    own: set[str] = set()
    for root in roots:
        files = [root] if root.is_file() else sorted(root.rglob("*.py"))
        if not files:
            sys.exit(f"smoke_test: no Python files under {root}")
        own.add(root.stem if root.is_file() else root.name)
        for path in files:
            own.add(path.stem)
            if path.parent != root and (path.parent / "__init__.py").is_file():
                own.add(path.parent.name)
            visitor.visit(ast.parse(path.read_text(), filename=str(path)))

    def third_party(modules: set[str]) -> list[str]:
        return sorted(
            m for m in modules
            if m.split(".")[0] not in sys.stdlib_module_names and m.split(".")[0] not in own
        )  # fmt: skip

    required = third_party(visitor.required)
    return required, [m for m in third_party(visitor.optional) if m not in required]


def _normalize(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def check_pins(pins_file: Path) -> list[str]:
    """Problems with the installed distributions against ``name==version`` lines."""
    from importlib.metadata import PackageNotFoundError, version

    from packaging.markers import Marker

    problems = []
    pinned = {}
    for line in pins_file.read_text().splitlines():
        pin, _, marker = line.partition(";")
        name, _, want = pin.strip().partition("==")
        if not name or (marker.strip() and not Marker(marker.strip()).evaluate()):
            continue  # not for this interpreter (the lock pins some packages per Python)
        pinned[_normalize(name)] = want
        try:
            have = version(name)
        except PackageNotFoundError:
            problems.append(f"{name}=={want} is not installed")
            continue
        if have != want:
            problems.append(f"{name} is {have}, the lock says {want}")
    check = subprocess.run(
        [sys.executable, "-m", "pip", "check"], capture_output=True, text=True, check=False
    )
    if check.returncode != 0 and not check.stdout.strip():
        problems.append(f"pip check did not run: {check.stderr.strip()[-300:]}")
    for line in check.stdout.splitlines():
        owner = _normalize(line.split()[0]) if line.strip() else ""
        if owner in pinned:
            problems.append(f"pip check: {line}")
        elif line.strip() and not line.startswith("No broken"):
            print(f"smoke_test: note (base image package, not locked): {line}")
    return problems


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--list", action="store_true", help="print the modules, import nothing")
    parser.add_argument("--also", action="append", default=[], help="a module loaded by name")
    parser.add_argument("--pins", type=Path, help="pins.txt: check installed versions first")
    parser.add_argument("roots", nargs="+", type=Path)
    args = parser.parse_args(argv)
    required, optional = scan(args.roots)
    required = sorted(set(required) | set(args.also))
    if args.list:
        print("\n".join(required))
        return 0
    failed = []
    if args.pins is not None:
        problems = check_pins(args.pins)
        for problem in problems:
            print(f"smoke_test: FAIL {problem}", file=sys.stderr)
        if problems:
            return 1
        print(f"smoke_test: installed distributions match {args.pins}")
    for module in required + optional:
        start = time.perf_counter()
        try:
            importlib.import_module(module)
        except Exception as exc:  # report every failure, not just the first
            if module in required:
                failed.append(module)
            print(f"smoke_test: FAIL {module}: {type(exc).__name__}: {exc}", file=sys.stderr)
            continue
        print(f"smoke_test: ok {module} ({time.perf_counter() - start:.1f} s)")
    if failed:
        print(f"smoke_test: {len(failed)} module(s) do not import: {failed}", file=sys.stderr)
        return 1
    print(f"smoke_test: all {len(required)} modules the tasks import are importable")
    return 0


if __name__ == "__main__":
    sys.exit(main())
