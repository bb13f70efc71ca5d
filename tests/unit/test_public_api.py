"""First-party plugins use only the public plugin API: names in ``lmrouter.__all__`` (with the
public modules among them, such as ``lmrouter.ir`` and ``lmrouter.sse``), the dialects' wire
structs in ``lmrouter.wire`` and the ``lmrouter.testing`` kit. What
they need, a third-party plugin can have too."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

import lmrouter

REPO = Path(__file__).resolve().parents[2]
SOURCES = sorted(REPO.glob("plugins/*/lmrouter_*/**/*.py"))
PUBLIC = set(lmrouter.__all__)
# Public packages a plugin may import from by their dotted name.
PUBLIC_PACKAGES = ("lmrouter.testing", "lmrouter.wire")


def _public_module(name: str) -> bool:
    return any(name == p or name.startswith(p + ".") for p in PUBLIC_PACKAGES)


def internal_imports(path: Path, root: Path = REPO) -> list[str]:
    found = []
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            module = node.module
            if module == "lmrouter":
                found += [
                    f"from lmrouter import {a.name}" for a in node.names if a.name not in PUBLIC
                ]
            elif module.startswith("lmrouter.") and not _public_module(module):
                found.append(f"from {module} import ...")
        elif isinstance(node, ast.Import):
            found += [
                f"import {a.name}"
                for a in node.names
                if a.name.startswith("lmrouter.") and not _public_module(a.name)
            ]
    return [f"{path.relative_to(root)}:{line}" for line in found]


def test_there_are_plugin_sources_to_check() -> None:
    assert len(SOURCES) > 40
    assert {"ir", "sse", "hookimpl", "RequestContext", "Provider", "Store"} <= PUBLIC


@pytest.mark.parametrize("path", SOURCES, ids=lambda p: str(p.relative_to(REPO / "plugins")))
def test_plugins_import_only_the_public_api(path: Path) -> None:
    assert internal_imports(path) == []


def test_every_public_name_exists() -> None:
    missing = [name for name in lmrouter.__all__ if not hasattr(lmrouter, name)]
    assert missing == []
    assert len(PUBLIC) == len(lmrouter.__all__)


def test_the_check_catches_an_internal_import(tmp_path: Path) -> None:
    source = tmp_path / "plugin.py"
    source.write_text(
        "from lmrouter import hookimpl, ir, plugins\n"
        "from lmrouter.app import require_principal\n"
        "import lmrouter.storage\n"
        "from lmrouter.testing.fakeserver import FakeServer\n"
        "from lmrouter.wire.anthropic import WireUsage\n"
        "from lmrouter.wirex import y\n"
    )
    found = [line.split(":", 1)[1] for line in internal_imports(source, tmp_path)]
    assert found == [
        "from lmrouter import plugins",
        "from lmrouter.app import ...",
        "import lmrouter.storage",
        "from lmrouter.wirex import ...",
    ]


FIRST_PARTY = sorted(
    p.name for p in (REPO / "plugins").iterdir() if (p / "pyproject.toml").is_file()
)


@pytest.mark.parametrize("name", FIRST_PARTY)
def test_first_party_plugins_declare_the_api_they_are_written_for(name: str) -> None:
    from lmrouter import plugins

    plugin = plugins.build().get_plugin(name)
    assert plugin is not None, f"plugin {name!r} did not load"
    assert plugins.api_compatible(plugin.api_version)
