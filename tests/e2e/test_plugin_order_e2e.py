"""``lmrouter plugins --hooks`` prints each hook's implementations in call order."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path


def test_plugins_hooks_prints_the_call_order(tmp_path: Path) -> None:
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "lmrouter.cli",
            "plugins",
            "--hooks",
            "--config",
            str(tmp_path / "x.toml"),
        ],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 0, result.stderr
    text = result.stdout
    block = text.split("lmrouter_request_end\n")[1].split("\nlmrouter_")[0]
    names = [line.split()[1] for line in block.splitlines()]
    assert names.index("credits") < names.index("metrics")
    assert "lmrouter_authenticate (first result wins)\n  1. operator_keys  (tryfirst)" in text
    migrations = text.split("lmrouter_migrations\n")[1].split("\nlmrouter_")[0]
    assert "stripe  (after accounts, credits)" in migrations
