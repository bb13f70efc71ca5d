"""Shared fixtures: the out-of-tree probe plugin, installed for real into a scratch directory."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from lmrouter.testing.site import PluginSite

PROBE_SOURCE = Path(__file__).parent / "plugins" / "lmrouter-probe"


@pytest.fixture(scope="session")
def probe_path(tmp_path_factory: pytest.TempPathFactory) -> str:
    """A directory holding the installed ``lmrouter-probe`` distribution. Servers started with
    it on ``PYTHONPATH`` discover the plugin through its entry point, as a user's install would."""
    target = tmp_path_factory.mktemp("probe-site")
    subprocess.run(
        [
            sys.executable,
            "-m",
            "pip",
            "install",
            "--quiet",
            "--no-deps",
            "--no-build-isolation",
            "--disable-pip-version-check",
            "--target",
            str(target),
            str(PROBE_SOURCE),
        ],
        check=True,
    )
    return str(target)


@pytest.fixture(scope="module")
def record(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Where the probe plugin writes each request_end of this module's router
    (``[probe] record = "…"`` in its config)."""
    return tmp_path_factory.mktemp("probe") / "request_end.jsonl"


@pytest.fixture
def site(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> PluginSite:
    """Plugins installed for real for this test (:class:`lmrouter.testing.site.PluginSite`),
    its directory on ``sys.path``."""
    path = tmp_path / "site"
    path.mkdir()
    monkeypatch.syspath_prepend(str(path))
    return PluginSite(path)


# The probe's record reader is shared by the end-to-end tests: `from lmrouter_probe.records
# import ends`. The source folder is importable; the server gets the installed copy.
sys.path.insert(0, str(PROBE_SOURCE))
