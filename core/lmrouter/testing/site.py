"""Plugins installed for real in a test: each one a module with a ``dist-info`` and its
``lmrouter.plugins`` entry point in a directory on ``sys.path``, found the way an installed
distribution is (for tests of what happens when a plugin loads, or fails to)."""

from __future__ import annotations

import itertools
import textwrap
from pathlib import Path

__all__ = ["PluginSite"]

_serial = itertools.count()


class PluginSite:
    """A directory of installed plugin distributions; put ``path`` on ``sys.path`` (or on a
    subprocess's ``PYTHONPATH``) for the router to find them."""

    def __init__(self, path: Path) -> None:
        self.path = path

    def add(self, name: str, source: str, *, target: str = "Plugin") -> None:
        """A plugin called ``name`` whose module is ``source`` (``hookimpl`` is imported for
        it); ``target`` is the entry point's object in it."""
        module = f"lmrouter_guard_{name}_{next(_serial)}"  # fresh: no import cache between tests
        (self.path / f"{module}.py").write_text(
            "from lmrouter import hookimpl\n" + textwrap.dedent(source)
        )
        info = self.path / f"lmrouter_guard_{name}-0.1.dist-info"
        info.mkdir()
        (info / "METADATA").write_text(
            f"Metadata-Version: 2.1\nName: lmrouter-guard-{name}\nVersion: 0.1\n"
        )
        (info / "entry_points.txt").write_text(f"[lmrouter.plugins]\n{name} = {module}:{target}\n")
