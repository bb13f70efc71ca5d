"""Run the real router (``lmrouter serve`` under granian) on a free loopback port, for tests."""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from pathlib import Path
from types import TracebackType


def free_port() -> int:
    """A port that was free a moment ago. Released at once, so another process may take it
    before the caller binds it: :meth:`RouterServer.start` then picks another."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


PORT_TRIES = 5


class PortTaken(RuntimeError):
    """``serve`` refused the port: another process bound it after it was picked."""


class RouterServer:
    """A router process with ``config_text`` (TOML). Use as a context manager; ``url`` is the base
    (``http://127.0.0.1:PORT``), ``openai_url`` adds ``/v1``, ``logs()`` returns what it printed."""

    def __init__(
        self,
        config_text: str,
        *,
        workdir: Path | None = None,
        env: dict[str, str] | None = None,
        python_path: list[str] | None = None,
        workers: int = 1,
        startup_timeout: float = 20.0,
    ) -> None:
        self._tmp = None if workdir else tempfile.TemporaryDirectory(prefix="lmrouter-test-")
        self.workdir = Path(workdir or self._tmp.name)  # type: ignore[union-attr]
        self.config_path = self.workdir / "lmrouter.toml"
        self.config_path.write_text(config_text)
        self.port = free_port()
        self.workers = workers
        self.env = {**os.environ, "LMROUTER_LOG_FORMAT": "json", **(env or {})}
        if python_path:
            self.env["PYTHONPATH"] = os.pathsep.join(
                [*python_path, *filter(None, [self.env.get("PYTHONPATH")])]
            )
        self.startup_timeout = startup_timeout
        self.log_path = self.workdir / "router.log"
        self.process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def openai_url(self) -> str:
        return f"{self.url}/v1"

    def start(self) -> RouterServer:
        """Serve, on :attr:`port` or, when another process took it since it was picked, on
        another: ``serve`` binds its port alone and refuses a taken one, so test processes
        running at once never share a router's port."""
        for _ in range(PORT_TRIES - 1):
            try:
                return self._start()
            except PortTaken:
                self.port = free_port()
        return self._start()

    def _start(self) -> RouterServer:
        log = self.log_path.open("wb")
        self.process = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "lmrouter.cli",
                "serve",
                "--config",
                str(self.config_path),
                "--port",
                str(self.port),
                "--workers",
                str(self.workers),
            ],
            cwd=self.workdir,
            env=self.env,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,  # its own process group: stop() reaches every worker
        )
        deadline = time.monotonic() + self.startup_timeout
        while time.monotonic() < deadline:
            code = self.process.poll()
            if code is not None:
                logs = self.logs()
                self.process = None
                if f"{self.port} is already in use" in logs:
                    raise PortTaken(logs)
                raise RuntimeError(f"router exited with {code}:\n{logs}")
            try:
                with urllib.request.urlopen(f"{self.url}/health", timeout=1) as response:
                    if response.status == 200:
                        return self
            except (urllib.error.URLError, ConnectionError, TimeoutError):
                time.sleep(0.05)
        self.stop()
        raise RuntimeError(f"router did not start within {self.startup_timeout}s:\n{self.logs()}")

    def stop(self, timeout: float = 15.0) -> int | None:
        if self.process is None:
            return None
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(timeout)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        with contextlib.suppress(ProcessLookupError):  # workers a failed start left behind
            os.killpg(self.process.pid, signal.SIGKILL)
        code = self.process.returncode
        self.process = None
        return code

    def crash(self) -> None:
        """SIGKILL the whole server (main process and workers), as a power cut would."""
        if self.process is not None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.process.pid, signal.SIGKILL)
            self.process.wait()
            self.process = None

    def logs(self) -> str:
        try:
            return self.log_path.read_text(errors="replace")
        except FileNotFoundError:
            return ""

    def __enter__(self) -> RouterServer:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()
        if self._tmp is not None:
            self._tmp.cleanup()
