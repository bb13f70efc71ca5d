"""The Makefile's promises: `make run` installs the runtime alone; `make test` adds the tools."""

from __future__ import annotations

import subprocess
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]


def planned(target: str, tmp_path: Path) -> list[str]:
    """The commands ``make TARGET`` would run on a fresh clone (a venv that does not exist)."""
    result = subprocess.run(
        ["make", "-n", target, f"VENV={tmp_path / 'venv'}"],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 0, result.stderr
    return result.stdout.splitlines()


def installs(lines: list[str]) -> list[str]:
    return [line for line in lines if "pip install" in line and "--upgrade pip" not in line]


def test_make_run_installs_only_the_runtime(tmp_path: Path) -> None:
    lines = installs(planned("run", tmp_path))
    assert lines, "make run installs the router"
    assert not any("[test]" in line for line in lines), lines
    assert not any("benchmarks/requirements.txt" in line for line in lines), lines  # matplotlib


def test_make_test_adds_the_test_tools(tmp_path: Path) -> None:
    lines = installs(planned("test", tmp_path))
    assert any("[test]" in line for line in lines), lines
