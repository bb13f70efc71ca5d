"""`make dist`: a wheel per distribution, and dist/lmrouter.pyz, which serves with nothing but a
Python interpreter — no venv, no installed packages, no network, an empty environment."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import openai
import pytest

from lmrouter.testing import config as kit
from lmrouter.testing.fake_openai import FakeOpenAI
from lmrouter.testing.server import free_port

REPO = Path(__file__).resolve().parents[2]
PLUGINS = {p.name for p in (REPO / "plugins").iterdir() if (p / "pyproject.toml").is_file()}
# The interpreter the venv was made from: a plain Python with none of the router's packages.
PYTHON = getattr(sys, "_base_executable", sys.executable)


@pytest.fixture(scope="session")
def dist(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """``make dist`` once per test session (it takes minutes: every wheel, then shiv)."""
    out = tmp_path_factory.mktemp("dist")
    subprocess.run(
        ["make", "dist", f"DIST={out}", f"VENV={Path(sys.prefix)}"],
        cwd=REPO,
        check=True,
        capture_output=True,
        timeout=1200,
    )
    return out


def bare(*args: str, home: Path) -> list[str]:
    """A command run with an empty environment: PATH for the shell's basics, HOME for shiv."""
    return ["env", "-i", "PATH=/usr/bin:/bin", f"HOME={home}", PYTHON, *args]


@pytest.fixture
def served(dist: Path, tmp_path: Path, fake_openai: FakeOpenAI) -> Iterator[str]:
    config = tmp_path / "my.toml"
    config.write_text(
        kit.config(
            admin="sk-operator-of-the-pyz",
            providers={"up": kit.provider("openai", fake_openai.base_url, "sk-upstream")},
            models={"gpt": kit.route("up", "gpt-up", price={"input": 1, "output": 2})},
        )
    )
    port = free_port()
    proc = subprocess.Popen(
        bare(
            str(dist / "lmrouter.pyz"),
            "serve",
            "--config",
            str(config),
            "--port",
            str(port),
            home=tmp_path,
        ),
        cwd=tmp_path,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 120  # the first run unpacks the archive
        while True:
            assert proc.poll() is None, proc.communicate()[0].decode()
            try:
                with urllib.request.urlopen(f"{url}/health", timeout=1):
                    break
            except OSError:
                assert time.monotonic() < deadline, "the pyz did not start serving"
                time.sleep(0.2)
        yield url
    finally:
        os.killpg(proc.pid, signal.SIGTERM)
        proc.wait(30)


@pytest.mark.timeout(1500)
def test_make_dist_builds_a_wheel_per_distribution(dist: Path) -> None:
    wheels = sorted(p.name.split("-")[0] for p in dist.glob("*.whl"))
    assert wheels == sorted(["lmrouter", *(f"lmrouter_{name}" for name in PLUGINS)])


@pytest.mark.timeout(1500)
def test_the_pyz_serves_with_only_python(served: str, dist: Path, tmp_path: Path) -> None:
    client = openai.OpenAI(base_url=f"{served}/v1", api_key="sk-operator-of-the-pyz")
    reply = client.chat.completions.create(
        model="gpt", messages=[{"role": "user", "content": "hi"}]
    )
    assert reply.choices[0].message.content
    listing = subprocess.run(
        bare(str(dist / "lmrouter.pyz"), "plugins", home=tmp_path),
        capture_output=True,
        text=True,
        timeout=120,
        cwd=tmp_path,
    )
    enabled = {line.split()[0] for line in listing.stdout.splitlines() if " enabled " in line}
    assert {
        p.name for p in (REPO / "plugins").iterdir() if (p / "pyproject.toml").is_file()
    } <= enabled
