"""The README's quick start works as written, from a fresh clone."""

from __future__ import annotations

import re
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
README = (REPO / "README.md").read_text()


def quick_start() -> str:
    return README[
        README.index("## Quick start") : README.index("\n## ", README.index("## Quick start") + 3)
    ]


def shell_lines(text: str) -> list[str]:
    blocks = re.findall(r"```sh\n(.*?)```", text, re.S)
    return [line.split("#")[0].strip() for block in blocks for line in block.splitlines()]


def test_the_lmrouter_command_is_on_the_path_before_it_is_used() -> None:
    """``make run`` installs into .venv, whose bin is on nobody's PATH: a bare ``lmrouter`` in
    the README needs the venv activated first (or the full path)."""
    lines = [line for line in shell_lines(README) if line]
    bare = [i for i, line in enumerate(lines) if re.search(r"(^|\$\(|\| )lmrouter ", line)]
    activate = [i for i, line in enumerate(lines) if line.startswith(". .venv/bin/activate")]
    assert bare, "the README shows lmrouter commands"
    assert activate and activate[0] < bare[0], lines[: bare[0] + 1]


def test_the_quick_start_uses_only_make_run_to_set_up() -> None:
    lines = shell_lines(quick_start())
    assert "make run" in lines and "make test" in lines
    assert not any(line.startswith(("pip ", "python -m venv", "make install")) for line in lines)


def test_make_run_serves_a_config_made_by_init() -> None:
    makefile = (REPO / "Makefile").read_text()
    assert re.search(r"^CONFIG \?= .*wildcard lmrouter\.toml", makefile, re.M), makefile
