"""The ``e2e`` marker (root ``conftest.py``) finds tests that start processes, through their
fixtures and their module's helpers, and leaves in-process tests to the fast run."""

from __future__ import annotations

import importlib.util
import subprocess
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[2]
spec = importlib.util.spec_from_file_location("root_conftest", ROOT / "conftest.py")
assert spec is not None and spec.loader is not None
conftest = importlib.util.module_from_spec(spec)
spec.loader.exec_module(conftest)


def helper_that_runs_the_cli() -> Any:
    return subprocess.run(["true"], check=False)


def uses_the_helper() -> None:
    helper_that_runs_the_cli()


def stays_in_process() -> int:
    return sum(range(10))


# Reached through a dict, so that this test itself names no helper that starts a process.
SAMPLES = {f.__name__: f for f in (helper_that_runs_the_cli, uses_the_helper, stays_in_process)}


def test_a_helper_one_level_down_makes_a_test_e2e() -> None:
    assert conftest._reaches(SAMPLES["helper_that_runs_the_cli"])
    assert conftest._reaches(SAMPLES["uses_the_helper"])
    assert not conftest._reaches(SAMPLES["stays_in_process"])
