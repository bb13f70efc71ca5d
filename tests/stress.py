"""Hunt tests that fail by chance: run the whole suite several times, each in a random order
(pytest-randomly, a seed per run) while every core is kept busy, and report each test that
failed at least once, with the seeds that reproduce it. `make test-stress` runs it.

    python tests/stress.py [--runs 5] [--seed N] [--load N] [--report PATH] [-- PYTEST ARGS]

The load is ``stress-ng --cpu N`` when stress-ng is installed, else N busy-loop processes; both
are started before the first run and stopped after the last. A test that fails here fails at
its cause (a sleep standing in for a condition, state left by another test, a port or a file
shared with another process): fix that, never retry the test or widen its bound.
"""

from __future__ import annotations

import argparse
import os
import random
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
# pytest's short summary (-ra is in the project's addopts): one line per failed or erred test
SUMMARY = re.compile(r"^(FAILED|ERROR) (\S+)", re.MULTILINE)
CLOSING = re.compile(r"^=* ?(\d+ (?:passed|failed).*?) in [\d.]+s", re.MULTILINE)


@dataclass
class Run:
    number: int
    seed: int
    seconds: float
    exit_code: int
    closing: str
    failed: list[str] = field(default_factory=list)


@contextmanager
def cpu_load(processes: int) -> Iterator[str]:
    """Every core busy while the suite runs; says what it started."""
    if processes <= 0:
        yield "none"
        return
    if stress_ng := shutil.which("stress-ng"):
        started = [subprocess.Popen([stress_ng, "--cpu", str(processes), "--quiet"])]
        what = f"stress-ng --cpu {processes}"
    else:
        spin = [sys.executable, "-c", "while True: pass"]
        started = [subprocess.Popen(spin) for _ in range(processes)]
        what = f"{processes} busy-loop processes"
    try:
        yield what
    finally:
        for process in started:
            process.terminate()
        for process in started:
            process.wait()


def run_suite(number: int, seed: int, pytest_args: list[str], folder: Path) -> Run:
    log = folder / f"run-{number}-seed-{seed}.log"
    command = [sys.executable, "-m", "pytest", "-p", "randomly", f"--randomly-seed={seed}"]
    command += ["-q", *pytest_args]  # -p randomly: the project's addopts turn it off
    began = time.monotonic()
    # files a run leaves for people to look at (the dashboard's screenshots) go to the run's
    # own folder: runs of several stress scripts at once must not clear each other's
    env = {**os.environ, "LMROUTER_ARTIFACTS": str(folder / f"artifacts-{number}")}
    with log.open("w") as out:
        done = subprocess.run(command, cwd=ROOT, env=env, stdout=out, stderr=subprocess.STDOUT)
    text = log.read_text(errors="replace")
    closing = CLOSING.findall(text)
    run = Run(
        number, seed, time.monotonic() - began, done.returncode, closing[-1] if closing else ""
    )
    run.failed = sorted({nodeid for _, nodeid in SUMMARY.findall(text)})
    if done.returncode not in (0, 1) and not run.failed:  # interrupted, internal error, …
        run.failed = [f"(the run itself: pytest exited with {done.returncode}, see {log})"]
    return run


def report(runs: list[Run], load: str, folder: Path) -> str:
    lines = [
        f"{len(runs)} random-order runs of the suite under CPU load ({load}); logs in {folder}"
    ]
    for run in runs:
        verdict = "clean" if not run.failed and run.exit_code == 0 else "FAILED"
        lines.append(
            f"  run {run.number}: seed {run.seed}, {run.seconds:.0f} s, {verdict}"
            f" ({run.closing or f'exit {run.exit_code}'})"
        )
    failures: dict[str, list[Run]] = {}
    for run in runs:
        for nodeid in run.failed:
            failures.setdefault(nodeid, []).append(run)
    clean = sum(1 for run in runs if not run.failed and run.exit_code == 0)
    lines.append(f"{clean} of {len(runs)} runs clean")
    if failures:
        lines.append(f"{len(failures)} tests failed at least once:")
        for nodeid, where in sorted(failures.items(), key=lambda item: -len(item[1])):
            seeds = ", ".join(str(run.seed) for run in where)
            lines.append(f"  {nodeid}: failed in {len(where)} of {len(runs)} runs (seeds {seeds})")
        lines.append("reproduce one: python -m pytest -p randomly --randomly-seed=SEED")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--runs", type=int, default=5, help="how many runs (default 5)")
    parser.add_argument("--seed", type=int, help="first run's seed (default: a random one)")
    parser.add_argument(
        "--load",
        type=int,
        default=os.cpu_count() or 1,
        help="busy processes while the suite runs (default: one per core; 0: none)",
    )
    parser.add_argument("--report", type=Path, help="also write the report to this file")
    parser.add_argument("pytest_args", nargs="*", help="passed to pytest (after --)")
    args = parser.parse_args(argv)
    # stopped with SIGTERM too, the load is stopped with it (and the running suite)
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    first = args.seed if args.seed is not None else random.randrange(1, 2**31)
    folder = Path(tempfile.mkdtemp(prefix="lmrouter-stress-"))
    runs: list[Run] = []
    with cpu_load(args.load) as load:
        for number in range(1, args.runs + 1):
            seed = first + number - 1
            print(f"run {number} of {args.runs}, seed {seed} …", flush=True)
            runs.append(run_suite(number, seed, args.pytest_args, folder))
            print(f"  {runs[-1].closing or f'exit {runs[-1].exit_code}'}", flush=True)
    text = report(runs, load, folder)
    print(text)
    if args.report:
        args.report.write_text(text + "\n")
    return 0 if all(not run.failed and run.exit_code == 0 for run in runs) else 1


if __name__ == "__main__":
    sys.exit(main())
