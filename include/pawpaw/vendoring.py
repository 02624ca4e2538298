"""Copying the ``pawpaw`` modules some code needs, so that code can travel without the library.

The MLflow model ships the modules its model file imports as ``code_paths``; the bento ships
the modules its service imports. Both follow ``import pawpaw...`` statements transitively
(read from the source, nothing is imported) and copy each module with the ``__init__.py`` of
every package above it, keeping the library's layout.
"""

from __future__ import annotations

import ast
import shutil
from collections.abc import Iterable
from pathlib import Path

__all__ = ["VendoringError", "library_root", "pawpaw_imports", "vendor_pawpaw"]

_TOP = "pawpaw"


class VendoringError(RuntimeError):
    """Code imports a ``pawpaw`` module that does not exist."""


def library_root() -> Path:
    """The folder of the installed ``pawpaw`` package."""
    return Path(__file__).resolve().parent


def _module_file(root: Path, dotted: str) -> Path | None:
    """``pawpaw.model.heads`` -> ``root/model/heads.py`` (or its package ``__init__.py``)."""
    parts = dotted.split(".")[1:]
    base = root.joinpath(*parts)
    for candidate in (base.with_suffix(".py"), base / "__init__.py"):
        if parts and candidate.is_file():
            return candidate
    return root / "__init__.py" if not parts else None


def pawpaw_imports(path: Path, root: Path) -> set[str]:
    """Dotted names of the ``pawpaw`` modules that the file imports, anywhere in it.

    ``from pawpaw.model import heads`` names ``pawpaw.model.heads`` when that is a module of
    ``root``, else ``pawpaw.model`` (``heads`` is then a name inside it).
    """
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(), filename=str(path))):
        if isinstance(node, ast.Import):
            found.update(a.name for a in node.names if a.name.split(".")[0] == _TOP)
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            if node.module.split(".")[0] != _TOP:
                continue
            for alias in node.names:
                sub = f"{node.module}.{alias.name}"
                found.add(sub if _module_file(root, sub) is not None else node.module)
    return found


def _with_parents(dotted: str) -> list[str]:
    parts = dotted.split(".")
    return [".".join(parts[: i + 1]) for i in range(len(parts))]


def vendor_pawpaw(
    sources: Iterable[Path], dest: Path, *, override: Path | None = None
) -> list[str]:
    """Copy into ``dest/pawpaw`` every module that ``sources`` import, transitively.

    ``override``: another ``pawpaw`` folder (a model's own copy) whose modules win over the
    library's where both have one: it is the code the model was trained and validated with.
    Returns the copied files, relative to ``dest``, sorted.
    """
    library = library_root()
    roots = [r for r in (override, library) if r is not None]

    def locate(dotted: str) -> Path:
        for root in roots:
            found = _module_file(root, dotted)
            if found is not None:
                return found
        raise VendoringError(f"the code imports {dotted}, which is not a module of {library}")

    chosen: dict[str, Path] = {}
    todo = list(sources)

    def choose(dotted: str) -> None:
        for name in _with_parents(dotted):
            if name not in chosen:
                chosen[name] = locate(name)
                todo.append(chosen[name])

    if override is not None:  # everything the model ships travels, whoever imports it
        for path in sorted(override.rglob("*.py")):
            parts = path.relative_to(override).with_suffix("").parts
            choose(".".join((_TOP, *parts[: -1 if parts[-1] == "__init__" else None])))
    while todo:
        for module in sorted(pawpaw_imports(todo.pop(), library)):
            choose(module)
    copied = []
    for source in chosen.values():
        base = next(root for root in roots if source.is_relative_to(root))
        target = dest / _TOP / source.relative_to(base)
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(source, target)
        copied.append(target.relative_to(dest).as_posix())
    return sorted(copied)
