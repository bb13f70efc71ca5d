"""Child processes: start pinned to CPUs, wait until they answer, always stop the whole group."""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import socket
import subprocess
import threading
import time
import urllib.error
import urllib.request
from pathlib import Path

HAVE_TASKSET = shutil.which("taskset") is not None


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def pinned(cmd: list[str], cpus: str | None) -> list[str]:
    """``cmd`` under ``taskset -c CPUS`` (children inherit the mask), when both are available."""
    if cpus and HAVE_TASKSET:
        return ["taskset", "-c", cpus, *cmd]
    return cmd


class Proc:
    """One child process in its own process group, with its output in ``log``."""

    def __init__(
        self,
        name: str,
        cmd: list[str],
        log: Path,
        *,
        cpus: str | None = None,
        env: dict[str, str] | None = None,
        cwd: Path | None = None,
    ) -> None:
        self.name = name
        self.cmd = pinned(cmd, cpus)
        self.cpus = cpus
        self.log = log
        with log.open("wb") as out:
            self.popen = subprocess.Popen(
                self.cmd,
                stdout=out,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                env={**os.environ, **(env or {})},
                cwd=cwd,
                start_new_session=True,
            )

    def alive(self) -> bool:
        return self.popen.poll() is None

    def tail(self, lines: int = 20) -> str:
        try:
            return "\n".join(self.log.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return ""

    def stop(self, grace: float = 5.0) -> None:
        """SIGTERM the process group, then SIGKILL whatever is left of it."""
        pgid = self.popen.pid  # start_new_session: the group id is the leader's pid
        for sig, wait in ((signal.SIGTERM, grace), (signal.SIGKILL, 2.0)):
            with contextlib.suppress(ProcessLookupError):
                os.killpg(pgid, sig)
            try:
                self.popen.wait(wait)
            except subprocess.TimeoutExpired:
                continue
            if not _group_alive(pgid):
                return
            time.sleep(0.2)
            if not _group_alive(pgid):
                return


def _group_alive(pgid: int) -> bool:
    try:
        os.killpg(pgid, 0)
    except ProcessLookupError:
        return False
    return True


def wait_ready(proc: Proc, probe: urllib.request.Request, timeout: float = 30.0) -> None:
    """Until ``probe`` answers 2xx; raises with the process's output if it dies or never does."""
    deadline = time.monotonic() + timeout
    last = ""
    while time.monotonic() < deadline:
        if not proc.alive():
            raise RuntimeError(f"{proc.name} exited ({proc.popen.returncode}):\n{proc.tail()}")
        try:
            with urllib.request.urlopen(probe, timeout=2) as response:
                if 200 <= response.status < 300:
                    return
                last = f"HTTP {response.status}"
        except urllib.error.HTTPError as exc:
            last = f"HTTP {exc.code}: {exc.read()[:200]!r}"
        except (urllib.error.URLError, OSError) as exc:
            last = str(exc)
        time.sleep(0.1)
    raise RuntimeError(f"{proc.name} not ready after {timeout:.0f}s ({last}):\n{proc.tail()}")


def group_pids(pgids: list[int]) -> list[int]:
    """Every live process in these process groups (a granian parent and its worker, nginx's
    master and worker, …) and their descendants in groups of their own (PostgreSQL's backends
    each start one): what a target costs is what all of them cost."""
    wanted = set(pgids)
    found: set[int] = set()
    parents: dict[int, int] = {}
    for entry in os.scandir("/proc"):
        if not entry.name.isdigit():
            continue
        try:
            stat = Path(f"/proc/{entry.name}/stat").read_text()
            fields = stat[stat.rfind(")") + 2 :].split()
            pid = int(entry.name)
            parents[pid] = int(fields[1])
            if int(fields[2]) in wanted:
                found.add(pid)
        except (OSError, ValueError, IndexError):
            continue
    grew = True
    while grew:  # children of what is found, however deep
        more = {pid for pid, parent in parents.items() if parent in found} - found
        found |= more
        grew = bool(more)
    return sorted(found)


def group_schedstat(pgids: list[int]) -> tuple[int, int]:
    """CPU time and run-queue wait (ns) of every thread of every process in these process groups
    (``/proc/PID/task/TID/schedstat``): a target's CPU cost per request, and how long it waited
    for a CPU that something else held — the noise a busy machine adds."""
    run = wait = 0
    for pid in group_pids(pgids):
        try:
            for task in os.scandir(f"/proc/{pid}/task"):
                fields = Path(f"{task.path}/schedstat").read_text().split()
                run += int(fields[0])
                wait += int(fields[1])
        except (OSError, ValueError, IndexError):
            continue
    return run, wait


PAGE = os.sysconf("SC_PAGE_SIZE")


def group_memory(pids: list[int]) -> tuple[int, int]:
    """(RSS, PSS) in bytes of these processes added up. RSS counts a page shared by a parent
    and its forked worker once per process, as ``ps`` and the OOM killer see it: the
    conservative figure. PSS (``/proc/PID/smaps_rollup``) splits shared pages between their
    users: what the group really adds to the machine."""
    rss = pss = 0
    for pid in pids:
        try:
            fields = dict(
                line.split(":", 1)
                for line in Path(f"/proc/{pid}/smaps_rollup").read_text().splitlines()[1:]
            )
            rss += int(fields["Rss"].split()[0]) * 1024
            pss += int(fields["Pss"].split()[0]) * 1024
        except (OSError, KeyError, ValueError):
            try:  # no smaps_rollup (old kernel): RSS from statm, PSS unknown, counted as RSS
                pages = int(Path(f"/proc/{pid}/statm").read_text().split()[1]) * PAGE
            except (OSError, ValueError, IndexError):
                continue
            rss += pages
            pss += pages
    return rss, pss


class RssSampler:
    """The peaks of a process group's summed RSS and PSS while a run lasts, sampled every
    ``interval`` seconds in a thread (the group's members are listed again every second, so a
    worker that a server restarts is still counted)."""

    def __init__(self, pgids: list[int], interval: float = 0.1) -> None:
        self.pgids = pgids
        self.interval = interval
        self.peak = 0
        self.peak_pss = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def __enter__(self) -> RssSampler:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()

    def _run(self) -> None:
        pids: list[int] = []
        listed = 0.0
        while True:
            now = time.monotonic()
            if now - listed >= 1.0:
                pids, listed = group_pids(self.pgids), now
            self._sample(pids)
            if self._stop.wait(self.interval):
                self._sample(group_pids(self.pgids))
                return

    def _sample(self, pids: list[int]) -> None:
        rss, pss = group_memory(pids)
        self.peak = max(self.peak, rss)
        self.peak_pss = max(self.peak_pss, pss)


def children_cpu_s() -> float:
    """CPU seconds of waited-for children (the load generators, run with subprocess.run)."""
    times = os.times()
    return times.children_user + times.children_system
