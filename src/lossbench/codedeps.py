"""Which source files a command executes: the modules of ``lossbench`` it imports, transitively.

Read from the source with :mod:`ast` (nothing is imported): every ``import`` and ``from ... import`` statement of a
module, at top level or inside a function, that names a module of the package, plus the ``__init__.py`` of every package
on the way (importing ``lossbench.models.losses.functional`` runs ``lossbench/__init__.py``,
``lossbench/models/__init__.py`` and ``lossbench/models/losses/__init__.py`` first). A function-level import counts
although it may not run: the set is an upper bound, never short.

Two users: ``tests/test_dvc_deps.py`` checks that every DVC stage's ``deps`` cover the files its command executes, and
:mod:`lossbench.training.resume` hashes the training code (:data:`TRAIN_MODULE`'s files) into a run's fingerprint. The
command dispatcher ``lossbench.cli`` is not followed: it maps a command name to its module and computes nothing.
"""

from __future__ import annotations

import ast
from collections.abc import Iterable
from pathlib import Path

#: the package's source folder (``src/lossbench``)
PACKAGE = Path(__file__).resolve().parent
#: the module a training run starts from (``lossbench train``)
TRAIN_MODULE = "lossbench.stages.train"


def module_file(module: str, root: Path = PACKAGE) -> Path | None:
    """The source file of ``module`` (``lossbench.x.y``) under the package folder ``root``, or None."""
    parts = module.split(".")
    if parts[0] != root.name:
        return None
    base = root.joinpath(*parts[1:])
    for f in (base.with_suffix(".py"), base / "__init__.py"):
        if f.is_file():
            return f
    return None


def imported_modules(path: Path, module: str, root: Path = PACKAGE) -> set[str]:
    """The package's modules that the source ``path`` (module ``module``) imports anywhere."""
    tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
    is_pkg = path.name == "__init__.py"
    found: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names = [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom):
            if node.level:  # relative: from the module's package, `level - 1` packages up
                pkg = module.split(".") if is_pkg else module.split(".")[:-1]
                pkg = pkg[:len(pkg) - (node.level - 1)]
                base = ".".join(pkg + ([node.module] if node.module else []))
            else:
                base = node.module or ""
            # `from a.b import c`: c is a module of a.b, or a name defined in a.b
            names = [base] + [f"{base}.{a.name}" for a in node.names if a.name != "*"]
        else:
            continue
        found.update(n for n in names if module_file(n, root) is not None)
    return found


def _with_packages(module: str) -> list[str]:
    """``module`` and every package above it: ``a.b.c`` -> ``a``, ``a.b``, ``a.b.c``."""
    parts = module.split(".")
    return [".".join(parts[:i]) for i in range(1, len(parts) + 1)]


def closure(modules: Iterable[str], root: Path = PACKAGE) -> dict[str, Path]:
    """Every module of the package that importing ``modules`` can execute: module -> its file."""
    todo = [m for start in modules for m in _with_packages(start)]
    seen: dict[str, Path] = {}
    while todo:
        mod = todo.pop()
        if mod in seen:
            continue
        f = module_file(mod, root)
        if f is None:
            if mod in modules:
                raise ValueError(f"{mod}: no such module under {root}")
            continue
        seen[mod] = f
        for m in imported_modules(f, mod, root):
            todo.extend(_with_packages(m))
    return dict(sorted(seen.items()))


def files(modules: Iterable[str], root: Path = PACKAGE) -> list[Path]:
    """The source files of :func:`closure`, sorted."""
    return sorted(set(closure(modules, root).values()))
