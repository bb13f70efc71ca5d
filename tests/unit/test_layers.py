"""The leaf modules depend on nothing else in the package (or only on other leaves): they can be
read, tested and imported by plugins without the app, the plugin manager or the config."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

CORE = Path(__file__).resolve().parents[2] / "core" / "lmrouter"

# module → the lmrouter modules it may import at run time (type-only imports are free)
LEAVES: dict[str, set[str]] = {
    "errors": set(),
    "usage": set(),
    "sse": set(),
    "money": set(),
    "headers": set(),
    "ir": {"lmrouter.errors", "lmrouter.usage"},  # errors: a file no route can take
    "wire/anthropic": {"lmrouter.ir", "lmrouter.usage"},
    "wire/gemini": {"lmrouter.usage"},
    "wire/openai": {"lmrouter.usage"},
    # Data in, not the plugin manager (lmrouter.stores asks the plugins); its one import of
    # lmrouter.stores is the old ``storage.migrate(store, pm)``, kept for plugin tests.
    "storage": {"lmrouter.stores"},
}


def runtime_imports(path: Path) -> set[str]:
    """The lmrouter modules imported outside ``if TYPE_CHECKING:`` blocks."""
    tree = ast.parse(path.read_text(encoding="utf-8"))
    skipped: set[int] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.If) and ast.unparse(node.test) == "TYPE_CHECKING":
            skipped |= {id(child) for child in ast.walk(node)}
    found: set[str] = set()
    for node in ast.walk(tree):
        if id(node) in skipped:
            continue
        if isinstance(node, ast.ImportFrom) and node.module and node.module.startswith("lmrouter"):
            if node.module == "lmrouter":
                found |= {f"lmrouter.{alias.name}" for alias in node.names}
            else:
                found.add(node.module)
        elif isinstance(node, ast.Import):
            found |= {a.name for a in node.names if a.name.startswith("lmrouter")}
    return found


@pytest.mark.parametrize("name", sorted(LEAVES))
def test_leaf_modules_import_only_leaves(name: str) -> None:
    assert runtime_imports(CORE / f"{name}.py") <= LEAVES[name]


def test_the_check_sees_run_time_imports_only(tmp_path: Path) -> None:
    source = tmp_path / "m.py"
    source.write_text(
        "from typing import TYPE_CHECKING\n"
        "from lmrouter import plugins\n"
        "import lmrouter.config\n"
        "if TYPE_CHECKING:\n"
        "    from lmrouter.gateway import Gateway\n"
    )
    assert runtime_imports(source) == {"lmrouter.plugins", "lmrouter.config"}
