"""Suite-wide: the ``e2e`` marker, set automatically. A test is end-to-end when it, a fixture it
uses, or a function or class of its module that either calls, starts the real router or the CLI
in another process or drives a browser (``RouterServer``, ``lmrouter_server``, the conformance
kit's ``Harness``, ``subprocess``, Playwright), and every test under ``tests/e2e``;
``tests/unit`` holds none. ``pytest -m "not e2e"`` runs the rest: the in-process suite, in
seconds rather than minutes.

Also one Hypothesis profile for the suite (tests/ and every plugin's tests; this file is loaded
first)."""

from __future__ import annotations

import inspect
import re
from functools import cache
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, settings

# Hypothesis times each example (a 200 ms deadline) and how fast it makes data (the too_slow
# health check): on a busy machine both fail properties that hold. Speed is for benchmarks/.
settings.register_profile("lmrouter", deadline=None, suppress_health_check=[HealthCheck.too_slow])
settings.load_profile("lmrouter")

PROCESS = re.compile(
    r"\b(RouterServer|lmrouter_server|Harness|subprocess|sync_playwright|playwright)\b"
)


@cache
def _starts_processes(function: Any) -> bool:
    try:
        return bool(PROCESS.search(inspect.getsource(function)))
    except (OSError, TypeError):  # built-in fixtures have no source to read
        return False


def _reaches(function: Any) -> bool:
    """``function`` or a helper of its module that it names (one level down) starts one."""
    if _starts_processes(function):
        return True
    module = inspect.getmodule(function)
    code = getattr(function, "__code__", None)
    for name in code.co_names if code else ():
        helper = getattr(module, name, None)
        local = inspect.isfunction(helper) or inspect.isclass(helper)
        if local and inspect.getmodule(helper) is module and _starts_processes(helper):
            return True
    return False


def _is_e2e(item: pytest.Item) -> bool:
    function = getattr(item, "function", None)
    if function is not None and _reaches(function):
        return True
    info = getattr(item, "_fixtureinfo", None)
    for definitions in info.name2fixturedefs.values() if info else ():
        if any(_reaches(d.func) for d in definitions):
            return True
    return False


E2E_DIR = Path(__file__).resolve().parent / "tests" / "e2e"
UNIT_DIR = Path(__file__).resolve().parent / "tests" / "unit"


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Every test under tests/e2e is e2e; one under tests/unit that starts a process is a
    mistake, refused at collection, so that the folders and ``-m "not e2e"`` always agree."""
    misplaced = []
    for item in items:
        path = Path(item.path)
        if path.is_relative_to(E2E_DIR) or _is_e2e(item):
            item.add_marker(pytest.mark.e2e)
            if path.is_relative_to(UNIT_DIR):
                misplaced.append(item.nodeid)
    if misplaced:
        raise pytest.UsageError(
            "tests under tests/unit start a process (move them to tests/e2e): "
            + ", ".join(misplaced)
        )
