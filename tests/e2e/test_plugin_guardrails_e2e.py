"""A plugin that fails to import stops ``lmrouter check`` and ``serve`` with the message (the
commands run in their own process); ``lmrouter plugins`` still lists it, as FAILED."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from lmrouter.testing import config as kit
from lmrouter.testing.site import PluginSite


def config(tmp_path: Path) -> Path:
    return kit.config_file(tmp_path, admin="k")


def test_check_and_serve_exit_with_the_message(tmp_path: Path, site: PluginSite) -> None:
    site.add("broken", "raise RuntimeError('boom at import')\n")
    path = str(config(tmp_path))
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(site.path), *sys.path])}
    for command in (["check"], ["serve", "--port", "1"]):
        result = subprocess.run(
            [sys.executable, "-m", "lmrouter.cli", *command, "--config", path],
            capture_output=True,
            text=True,
            env=env,
            timeout=60,
        )
        assert result.returncode == 1, result
        assert "plugin 'broken' failed to load: RuntimeError('boom at import')" in result.stderr
    listing = subprocess.run(
        [sys.executable, "-m", "lmrouter.cli", "plugins", "--config", path],
        capture_output=True,
        text=True,
        env=env,
        timeout=60,
    )
    assert listing.returncode == 0 and "FAILED" in listing.stdout
