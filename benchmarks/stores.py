"""The servers ``router-full-pg`` keeps its state in: PostgreSQL and Redis, local, each started as
one of the target's own processes, so that their CPU counts as the router's (on SQLite the
store's work is in the router's process; comparing one without the other would flatter the
server setup).

PostgreSQL runs with its defaults (fsync and synchronous commit on), as an operator's would,
unlike the test suite's throwaway cluster. As root it runs as the ``postgres`` user (initdb and
postgres refuse root). Redis keeps nothing on disk, as the router needs nothing of it after a
restart but rate-limit state.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import tempfile
import time
from pathlib import Path

from benchmarks.procs import Proc, free_port
from benchmarks.targets import Skip

DATABASE = "lmrouter_bench"


def _pg_bin() -> Path:
    found = sorted(Path("/usr/lib/postgresql").glob("*/bin/postgres"))
    if found:
        return found[-1].parent
    if on_path := shutil.which("postgres"):
        return Path(on_path).parent
    raise Skip("PostgreSQL's server binaries are not installed (apt-get install postgresql)")


def _as_postgres(cmd: list[str]) -> list[str]:
    return ["runuser", "-u", "postgres", "--", *cmd] if os.geteuid() == 0 else cmd


def start_postgres(workdir: Path, cpus: str | None) -> tuple[Proc, str]:
    """A new cluster in ``workdir``, serving; its process and the benchmark database's URL."""
    pg = _pg_bin()
    home = Path(tempfile.mkdtemp(prefix="postgres-", dir=workdir))  # one per target
    if os.geteuid() == 0:
        workdir.chmod(0o711)  # the postgres user walks through to its own folder
        shutil.chown(home, "postgres", "postgres")
    data = home / "data"
    init = [str(pg / "initdb"), "-D", str(data), "-A", "trust", "-U", "postgres", "-E", "UTF8"]
    done = subprocess.run(_as_postgres(init), capture_output=True, text=True, timeout=120)
    if done.returncode != 0:
        raise Skip(f"initdb failed: {done.stderr.strip()[-300:]}")
    port = free_port()
    cmd = [str(pg / "postgres"), "-D", str(data), "-p", str(port), "-k", str(home)]
    cmd += ["-c", "listen_addresses=127.0.0.1", "-c", "max_connections=200"]
    proc = Proc("postgres", _as_postgres(cmd), home / "postgres.log", cpus=cpus)
    createdb = [str(pg / "createdb"), "-h", "127.0.0.1", "-p", str(port), "-U", "postgres"]
    deadline = time.monotonic() + 60
    while True:  # until the server accepts connections: createdb says so by succeeding
        done = subprocess.run([*createdb, DATABASE], capture_output=True, text=True, timeout=30)
        if done.returncode == 0:
            return proc, f"postgresql://postgres@127.0.0.1:{port}/{DATABASE}"
        if not proc.alive() or time.monotonic() > deadline:
            proc.stop()
            raise Skip(f"PostgreSQL did not start: {done.stderr.strip()}\n{proc.tail()}")
        time.sleep(0.2)


def start_redis(workdir: Path, cpus: str | None) -> tuple[Proc, str]:
    binary = shutil.which("redis-server")
    if binary is None:
        raise Skip("redis-server is not installed (apt-get install redis-server)")
    port = free_port()
    cmd = [binary, "--port", str(port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no"]
    proc = Proc("redis", cmd, workdir / f"redis-{port}.log", cpus=cpus)
    cli = shutil.which("redis-cli")
    deadline = time.monotonic() + 30
    while cli is not None:  # until it answers PING
        ping = subprocess.run([cli, "-p", str(port), "ping"], capture_output=True, text=True)
        if ping.stdout.strip() == "PONG":
            break
        if not proc.alive() or time.monotonic() > deadline:
            proc.stop()
            raise Skip(f"redis-server did not start:\n{proc.tail()}")
        time.sleep(0.1)
    return proc, f"redis://127.0.0.1:{port}/0"
