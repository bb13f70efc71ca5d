"""Throwaway PostgreSQL and Redis servers for tests: real processes from the machine's binaries,
on a free loopback port, in a temporary directory, stopped (and their files removed) at exit.

``PostgresCluster``: ``initdb`` + ``pg_ctl`` from Debian's PostgreSQL (``/usr/lib/postgresql/
<version>/bin``, or ``$LMROUTER_PG_BIN``); as root they run as the ``postgres`` user, since
``initdb`` refuses root. :meth:`PostgresCluster.database` makes an empty database per test.
``RedisServer``: ``redis-server`` with no persistence. For outages: :meth:`PostgresCluster.pause`
and :meth:`PostgresCluster.resume` keep the data; :meth:`RedisServer.stop` and ``start`` again
reuse the port (a restarted Redis is empty, as one without persistence is). Both raise
:class:`MissingServer` with what to install when the binary is absent (``make test`` installs
both on Debian).
"""

from __future__ import annotations

import contextlib
import itertools
import os
import shutil
import socket
import subprocess
import tempfile
import time
from pathlib import Path


class MissingServer(RuntimeError):
    """A server binary the tests need is not installed."""


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _pg_bin() -> Path:
    if os.environ.get("LMROUTER_PG_BIN"):
        return Path(os.environ["LMROUTER_PG_BIN"])
    found = sorted(Path("/usr/lib/postgresql").glob("*/bin/initdb"), key=lambda p: p.parts)
    if found:
        return found[-1].parent
    on_path = shutil.which("initdb")
    if on_path:
        return Path(on_path).parent
    raise MissingServer(
        "the PostgreSQL tests need PostgreSQL's server binaries (initdb, pg_ctl): none in "
        "/usr/lib/postgresql/*/bin or on PATH. Install them with: sudo apt-get install "
        "postgresql (or set LMROUTER_PG_BIN to the directory holding initdb)"
    )


class PostgresCluster:
    """One PostgreSQL server for a test session; trust authentication on 127.0.0.1."""

    def __init__(self) -> None:
        self.bin = _pg_bin()
        self.port = free_port()
        self.dir = Path(tempfile.mkdtemp(prefix="lmrouter-pg-"))
        self.data = self.dir / "data"
        self._as_root = os.geteuid() == 0
        self._names = itertools.count(1)

    def _run(self, *args: str, timeout: float = 60) -> None:
        command = [str(self.bin / args[0]), *args[1:]]
        if self._as_root:  # initdb and postgres refuse to run as root
            command = ["runuser", "-u", "postgres", "--", *command]
        done = subprocess.run(command, capture_output=True, text=True, timeout=timeout)
        if done.returncode != 0:
            raise RuntimeError(f"{' '.join(command)} failed:\n{done.stdout}{done.stderr}")

    def start(self) -> PostgresCluster:
        if self._as_root:
            shutil.chown(self.dir, "postgres", "postgres")
        self._run("initdb", "-D", str(self.data), "-A", "trust", "-U", "postgres", "-E", "UTF8")
        self.resume()
        return self

    def pause(self) -> None:
        """Stop the server, keeping its data (a database outage, for failure tests)."""
        self._run("pg_ctl", "-D", str(self.data), "-m", "fast", "-w", "stop")

    def resume(self) -> None:
        """Start the server (again), on the same port, with the same data."""
        options = (
            f"-p {self.port} -k {self.dir} -c listen_addresses=127.0.0.1 "
            "-c fsync=off -c synchronous_commit=off -c full_page_writes=off"
        )
        self._run(
            "pg_ctl", "-D", str(self.data), "-o", options, "-l", str(self.dir / "log"), "-w",
            "start",
        )  # fmt: skip

    def stop(self) -> None:
        with contextlib.suppress(Exception):
            self._run("pg_ctl", "-D", str(self.data), "-m", "immediate", "-w", "stop")
        shutil.rmtree(self.dir, ignore_errors=True)

    def url(self, database: str = "postgres") -> str:
        return f"postgresql://postgres@127.0.0.1:{self.port}/{database}"

    def database(self, name: str | None = None) -> str:
        """A new empty database; its URL."""
        name = name or f"test_{os.getpid()}_{next(self._names)}"
        self.sql(f'CREATE DATABASE "{name}"')
        return self.url(name)

    def drop(self, *urls: str) -> None:
        """Drop the databases at ``urls`` (closing their connections): each costs ~8 MB."""
        if urls:
            self.sql(
                *(
                    f'DROP DATABASE IF EXISTS "{url.rpartition("/")[2]}" WITH (FORCE)'
                    for url in urls
                )
            )

    def sql(self, *statements: str, database: str = "postgres") -> str:
        """``statements`` through psql, one connection, each on its own (not one transaction)."""
        psql = self.bin / "psql"
        if not psql.exists():
            psql = Path(shutil.which("psql") or "psql")
        commands = [part for statement in statements for part in ("-c", statement)]
        done = subprocess.run(
            [str(psql), "-X", "-q", "-At", "-v", "ON_ERROR_STOP=1", "-d", self.url(database),
             *commands],
            capture_output=True, text=True, timeout=300,
        )  # fmt: skip
        if done.returncode != 0:
            raise RuntimeError(f"psql {statements!r} failed: {done.stderr}")
        return done.stdout

    def __enter__(self) -> PostgresCluster:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()


class RedisServer:
    """One ``redis-server`` on 127.0.0.1, no persistence."""

    def __init__(self) -> None:
        binary = shutil.which("redis-server") or "/usr/bin/redis-server"
        if not Path(binary).exists():
            raise MissingServer(
                "the Redis tests need redis-server, which is not installed. Install it with: "
                "sudo apt-get install redis-server (make test does this on Debian as root)"
            )
        self.binary = binary
        self.port = free_port()
        self.process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def start(self) -> RedisServer:
        self.process = subprocess.Popen(
            [self.binary, "--port", str(self.port), "--bind", "127.0.0.1", "--save", "",
             "--appendonly", "no", "--daemonize", "no"],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
        )  # fmt: skip
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"redis-server exited with {self.process.returncode}")
            try:
                with socket.create_connection(("127.0.0.1", self.port), timeout=1) as sock:
                    sock.sendall(b"PING\r\n")
                    if sock.recv(16).startswith(b"+PONG"):
                        return self
            except OSError:
                time.sleep(0.02)  # not listening yet: nothing to await but the port
        raise RuntimeError("redis-server did not start within 20 s")

    def stop(self) -> None:
        if self.process is not None:
            self.process.terminate()
            try:
                self.process.wait(10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
            self.process = None

    def __enter__(self) -> RedisServer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()
