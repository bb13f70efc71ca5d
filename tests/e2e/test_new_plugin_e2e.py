"""``lmrouter new-plugin`` makes a plugin that installs and passes its own tests (in a
process of its own)."""

from __future__ import annotations

import os
import re
import subprocess
import sys
import tomllib
from pathlib import Path

from lmrouter import cli
from lmrouter.hookspecs import API_VERSION


def test_generated_plugin_installs_and_passes_its_own_tests(tmp_path: Path) -> None:
    assert cli.main(["new-plugin", "acme-cloud", "--dir", str(tmp_path)]) == 0
    root = tmp_path / "lmrouter-acme-cloud"
    project = tomllib.loads((root / "pyproject.toml").read_text())
    assert project["project"]["entry-points"]["lmrouter.plugins"] == {
        "acme-cloud": "lmrouter_acme_cloud"
    }
    assert project["tool"]["lmrouter"]["plugin-api"] == f">={API_VERSION},<2"
    assert project["project"]["dependencies"] == ["lmrouter>=0.1,<0.2"]
    site = tmp_path / "site"
    pip = [sys.executable, "-m", "pip", "install", "--quiet", "--no-deps"]
    pip += ["--no-build-isolation", "--disable-pip-version-check", "--target", str(site)]
    subprocess.run([*pip, str(root)], check=True)
    env = {**os.environ, "PYTHONPATH": str(site)}
    listed = subprocess.run(
        [sys.executable, "-m", "lmrouter.cli", "plugins"],
        env=env, capture_output=True, text=True, check=True,
    )  # fmt: skip
    assert "acme-cloud" in listed.stdout and "lmrouter-acme-cloud 0.1.0" in listed.stdout
    # The tests of the generated project, run from its own directory as its author would.
    run = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:randomly", "-p", "no:cacheprovider"],
        cwd=root, env=env, capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    assert run.returncode == 0, run.stdout[-4000:] + run.stderr[-2000:]
    summary = run.stdout.strip().splitlines()[-1]
    passed = re.search(r"(\d+) passed", summary)
    assert passed and int(passed.group(1)) >= 20 and "skipped" not in summary, summary
