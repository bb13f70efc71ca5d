"""``python -m benchmarks``: router overhead vs direct and vs a bare aiohttp proxy, in one run.

Starts the fake upstream and each target on its own port, pinned to CPUs, drives them with wrk
(closed loop) and k6 (open loop, time to first byte), writes ``benchmarks/results/latest.json``
and ``latest.md`` and prints the Markdown. Every process it starts is stopped on the way out.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import signal
import sys
import tempfile
import time
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from benchmarks import loadgen, report, targets
from benchmarks.loadgen import Measurement
from benchmarks.procs import HAVE_TASKSET, Proc, children_cpu_s, group_schedstat, wait_ready
from benchmarks.targets import Target

RESULTS = Path(__file__).resolve().parent / "results"
JSON_BODY = b'{"model":"bench","messages":[{"role":"user","content":"hi"}]}'
STREAM_BODY = b'{"model":"bench","messages":[{"role":"user","content":"hi"}],"stream":true}'
BODIES = {"json": JSON_BODY, "stream": STREAM_BODY}


@dataclass
class Placement:
    target: str | None  # the proxy under test
    upstream: str | None
    loadgen: str | None
    text: str


def plan_cpus(no_pin: bool) -> Placement:
    cpus = sorted(os.sched_getaffinity(0))
    if no_pin or len(cpus) < 2 or not HAVE_TASKSET:
        why = "--no-pin" if no_pin else "taskset missing" if not HAVE_TASKSET else "one CPU"
        return Placement(None, None, None, f"not pinned ({why})")
    first, second = str(cpus[0]), str(cpus[1])
    if len(cpus) == 2:
        return Placement(
            first,
            second,
            second,
            f"target under test alone on CPU {first}; the upstream and the load "
            f"generator share CPU {second} (so they compete with each other, and "
            "`direct` runs wrk and the upstream on that one CPU)",
        )
    rest = ",".join(str(c) for c in cpus[2:])
    return Placement(
        first,
        second,
        rest,
        f"target under test on CPU {first}, upstream on "
        f"CPU {second}, load generator on CPUs {rest}",
    )


def post(url: str, body: bytes) -> urllib.request.Request:
    return urllib.request.Request(
        url,
        data=body,
        method="POST",
        headers={"Content-Type": "application/json", "Authorization": "Bearer sk-bench"},
    )


def sanity_check(target: Target, chunks: int) -> str:
    """One real answer of each kind before any load: a target that answers wrongly is broken,
    not fast."""
    with urllib.request.urlopen(post(target.url, JSON_BODY), timeout=10) as response:
        raw = response.read()
        if response.status != 200:
            raise RuntimeError(f"{target.name}: HTTP {response.status} {raw[:200]!r}")
    doc = json.loads(raw)
    if not doc["choices"][0]["message"]["content"]:
        raise RuntimeError(f"{target.name}: empty completion: {raw[:200]!r}")
    if target.name == "router" and "cost" not in doc.get("usage", {}):
        raise RuntimeError(f"router: no usage.cost in {raw[:300]!r}")
    with urllib.request.urlopen(post(target.url, STREAM_BODY), timeout=10) as response:
        ctype = response.headers.get("content-type", "")
        stream = response.read()
    events = stream.count(b"data: ")
    if (
        not ctype.startswith("text/event-stream")
        or not stream.endswith(b"data: [DONE]\n\n")
        or events < chunks + 2
    ):
        raise RuntimeError(
            f"{target.name}: bad stream ({ctype}, {events} events): {stream[-200:]!r}"
        )
    return f"json {len(raw)} B, stream {events} events / {len(stream)} B"


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(
        prog="python -m benchmarks",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument(
        "--duration",
        type=float,
        default=10.0,
        help="seconds of each closed-loop throughput run (default 10)",
    )
    p.add_argument(
        "--latency-duration",
        type=float,
        default=5.0,
        help="seconds of each one-connection run and each k6 run (default 5)",
    )
    p.add_argument("--connections", type=int, default=32, help="throughput runs (default 32)")
    p.add_argument(
        "--quick",
        action="store_true",
        help="2-second runs, results in results/quick.*: a smoke test, not a figure",
    )
    p.add_argument(
        "--targets",
        default="direct,aiohttp-proxy,router",
        help=f"comma-separated, from {','.join(targets.TARGETS)}",
    )
    p.add_argument("--nginx", action="store_true", help="add the nginx target")
    p.add_argument(
        "--rate", type=int, default=500, help="open-loop arrival rate in req/s for k6 (default 500)"
    )
    p.add_argument("--no-k6", action="store_true", help="skip the k6 runs (TTFB, open loop)")
    p.add_argument("--chunks", type=int, default=20, help="content events per stream")
    p.add_argument(
        "--upstream",
        choices=("builtin", "fake-openai"),
        default="builtin",
        help="builtin: benchmarks.upstream (raw asyncio, fastest); fake-openai: "
        "lmrouter.testing.fake_openai (aiohttp.web, the tests' faithful fake)",
    )
    p.add_argument(
        "--upstream-workers",
        type=int,
        default=1,
        help="fake upstream processes sharing the port (SO_REUSEPORT)",
    )
    p.add_argument(
        "--rounds",
        type=int,
        default=2,
        help="throughput runs: alternating rounds of duration/rounds; best one kept (default 2)",
    )
    p.add_argument("--no-pin", action="store_true", help="do not pin processes with taskset")
    p.add_argument(
        "--keep", action="store_true", help="on failure, leave the processes running for debugging"
    )
    p.add_argument("--strict", action="store_true", help="exit 2 when the router misses a target")
    args = p.parse_args(argv)
    if args.quick:
        args.duration = min(args.duration, 2.0)
        args.latency_duration = min(args.latency_duration, 2.0)
    names = [n.strip() for n in args.targets.split(",") if n.strip()]
    if args.nginx and "nginx" not in names:
        names.append("nginx")
    unknown = set(names) - set(targets.TARGETS)
    if unknown:
        p.error(f"unknown targets: {', '.join(sorted(unknown))}")
    args.target_names = names
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))  # so `finally` cleans up
    placement = plan_cpus(args.no_pin)
    notes: list[str] = []
    tools: dict[str, str | None] = {"wrk": loadgen.ensure_wrk()}
    k6 = None if args.no_k6 else loadgen.ensure_k6()
    if k6 is None and not args.no_k6:
        notes.append("k6 unavailable: no open-loop or TTFB figures in this run")
    tools["k6"] = k6[1] if k6 else None
    nginx = None
    if "nginx" in args.target_names:
        nginx = targets.find_nginx(loadgen.TOOLS_DIR)
        if nginx is None:
            args.target_names.remove("nginx")
            notes.append("nginx requested but not installable (no apt-get?): skipped")
    workdir = Path(tempfile.mkdtemp(prefix="lmrouter-bench-"))
    procs: list[Proc] = []
    started: dict[str, Target] = {}
    runs: list[Measurement] = []
    failed = True
    load_start = report.loadavg()
    try:
        upstream = targets.start_upstream(
            workdir,
            placement.upstream,
            workers=args.upstream_workers,
            chunks=args.chunks,
            kind=args.upstream,
        )
        procs += upstream.procs
        wait_ready(upstream.procs[0], post(upstream.url, JSON_BODY))
        for name in args.target_names:
            target = _start(name, workdir, placement, upstream, nginx)
            procs += target.procs
            try:
                if target.procs:
                    wait_ready(target.procs[0], post(target.url, JSON_BODY), timeout=60)
                detail = sanity_check(target, args.chunks)
            except (RuntimeError, OSError, LookupError, ValueError, TypeError) as exc:
                notes.append(f"{name} failed to start or answered wrongly, skipped: {exc}")
                print(f"error: {notes[-1]}", file=sys.stderr)
                if not args.keep:
                    for proc in target.procs:
                        proc.stop()
                        procs.remove(proc)
                continue
            print(f"ready: {name:<14} {target.url}  ({detail})", file=sys.stderr)
            started[name] = target
        runs = _measure(args, started, upstream, placement, workdir, k6[0] if k6 else None, procs)
        failed = False
    except RuntimeError as exc:
        print(f"error: {exc}", file=sys.stderr)
    finally:
        if failed and args.keep:
            print(f"--keep: processes left running, logs in {workdir}:", file=sys.stderr)
            for proc in procs:
                print(
                    f"  {proc.name}: pid/pgid {proc.popen.pid}  {' '.join(proc.cmd)}",
                    file=sys.stderr,
                )
        else:
            for proc in reversed(procs):
                proc.stop()
            if failed:
                print(f"logs kept in {workdir}", file=sys.stderr)
            else:
                shutil.rmtree(workdir, ignore_errors=True)
    if failed:
        return 1
    return _write(args, runs, placement, tools, notes, started, load_start)


def _start(
    name: str, workdir: Path, placement: Placement, upstream: Target, nginx: str | None
) -> Target:
    if name == "direct":
        return Target("direct", upstream.port)
    if name == "aiohttp-proxy":
        return targets.start_aiohttp_proxy(workdir, placement.target, upstream.port)
    if name == "router":
        return targets.start_router(workdir, placement.target, upstream.port)
    assert nginx is not None
    return targets.start_nginx(workdir, placement.target, upstream.port, nginx)


def _measure(
    args: argparse.Namespace,
    started: dict[str, Target],
    upstream: Target,
    placement: Placement,
    workdir: Path,
    k6: str | None,
    procs: list[Proc],
) -> list[Measurement]:
    c = args.connections
    lat, dur = args.latency_duration, args.duration
    cpus = placement.loadgen

    def wrk(kind: str, conns: int, seconds: float) -> Callable[[Target], Measurement]:
        return lambda t: loadgen.run_wrk(
            target=t.name,
            scenario=f"{kind}-c{conns}",
            url=t.url,
            body=BODIES[kind],
            connections=conns,
            duration=seconds,
            cpus=cpus,
            workdir=workdir,
        )

    def k6_run(scenario: str, body: bytes, rate: int | None) -> Callable[[Target], Measurement]:
        return lambda t: loadgen.run_k6(
            binary=k6 or "k6",
            target=t.name,
            scenario=scenario,
            url=t.url,
            body=body,
            duration=lat,
            cpus=cpus,
            rate=rate,
        )

    # (run, seconds per round, rounds). Throughput runs are split into rounds that alternate
    # between targets, and each target keeps its best round: outside load only ever slows a
    # round down, and a burst of it then has to hit every round of one target to skew a ratio.
    rounds = max(1, args.rounds)
    plan: list[tuple[Callable[[Target], Measurement], float, int]] = [
        (wrk("json", 1, lat), lat, 1),
        (wrk("json", c, dur / rounds), dur / rounds, rounds),
        (wrk("stream", 1, lat), lat, 1),
        (wrk("stream", c, dur / rounds), dur / rounds, rounds),
    ]
    if k6:
        plan.append((k6_run("stream-ttfb", STREAM_BODY, None), lat + 1.5, 1))
        plan.append((k6_run(f"json-open{args.rate}", JSON_BODY, args.rate), lat + 1.5, 1))
    warm = 1.0 if args.quick else 2.0
    total = len(started) * (2 * warm + sum((s + 0.5) * r for _, s, r in plan))
    print(f"measuring {', '.join(started)}: about {total:.0f} s", file=sys.stderr)
    for target in started.values():  # connection pools, imports, first-call paths
        for kind in ("json", "stream"):
            m = wrk(kind, c, warm)(target)
            if m.error_total:
                print(f"warm-up {target.name} {kind}: errors {m.errors} {m.note}", file=sys.stderr)
    runs = []
    for run, _, n in plan:  # scenario by scenario: targets compared are measured close in time
        done: dict[str, list[Measurement]] = {name: [] for name in started}
        for _ in range(n):
            for target in started.values():
                _check_alive(procs)
                m = _sampled(run, target, upstream)
                done[target.name].append(m)
                print(
                    f"{m.scenario:<15} {m.target:<14} {m.rps:>9,.0f} req/s  "
                    f"p50 {report.fmt(m.p50_ms, 3)}  p99 {report.fmt(m.p99_ms, 3)} ms  "
                    f"ttfb p50 {report.fmt(m.ttfb_p50_ms, 3)}  "
                    f"cpu {report.fmt(m.cpu_us_per_req, 0)} us/req  "
                    f"wait {report.fmt(m.target_wait_pct, 0)}%  errors {m.error_total} {m.note}",
                    file=sys.stderr,
                )
                time.sleep(0.5)
        runs += [_best(ms) for ms in done.values()]
    _check_alive(procs)
    return runs


def _best(rounds: list[Measurement]) -> Measurement:
    """The round with the most req/s, with the errors of every round added to it."""
    if len(rounds) == 1:
        return rounds[0]
    best = max(rounds, key=lambda m: m.rps)
    errors: dict[str, int] = {}
    for m in rounds:
        for key, value in m.errors.items():
            errors[key] = errors.get(key, 0) + value
    best.errors = errors
    best.round_rps = [m.rps for m in rounds]
    best.note = (best.note + f" best of {len(rounds)} rounds").strip()
    return best


def _sampled(run: Callable[[Target], Measurement], target: Target, upstream: Target) -> Measurement:
    """``run(target)`` with the CPU time of the target, the upstream and the load generator."""
    mine = [p.popen.pid for p in (target.procs or upstream.procs)]
    theirs = [p.popen.pid for p in upstream.procs]
    cpu0, wait0 = group_schedstat(mine)
    up0, _ = group_schedstat(theirs)
    gen0 = children_cpu_s()
    m = run(target)
    cpu1, wait1 = group_schedstat(mine)
    up1, _ = group_schedstat(theirs)
    gen1 = children_cpu_s()
    if m.duration_s and m.requests:
        ns = m.duration_s * 1e9
        m.cpu_us_per_req = round((cpu1 - cpu0) / 1000 / m.requests, 1)
        m.target_cpu_pct = round(100 * (cpu1 - cpu0) / ns, 1)
        m.target_wait_pct = round(100 * (wait1 - wait0) / ns, 1)
        m.upstream_cpu_pct = round(100 * (up1 - up0) / ns, 1)
        m.loadgen_cpu_pct = round(100 * (gen1 - gen0) / m.duration_s, 1)
    return m


def _check_alive(procs: list[Proc]) -> None:
    for proc in procs:
        if not proc.alive():
            raise RuntimeError(f"{proc.name} died ({proc.popen.returncode}):\n{proc.tail()}")


def _write(
    args: argparse.Namespace,
    runs: list[Measurement],
    placement: Placement,
    tools: dict[str, str | None],
    notes: list[str],
    started: dict[str, Target],
    load_start: list[float],
) -> int:
    if "nginx" in started:
        tools["nginx"] = started["nginx"].version
    for m in runs:  # a saturated one-worker target uses all of its CPU; less means it was robbed
        saturated = m.scenario.endswith(f"-c{args.connections}") and m.target != "direct"
        if saturated and m.target_cpu_pct is not None and m.target_cpu_pct < 75:
            notes.append(
                f"{m.scenario} {m.target}: the target used only {m.target_cpu_pct:.0f} % of its "
                f"CPU under saturating load (run-queue wait {m.target_wait_pct:.0f} %): other "
                "work took CPU 0, so its req/s is low; prefer the CPU-per-request ratio"
            )
    summary = report.summarize(runs, args.connections)
    result: dict[str, Any] = {
        "meta": {
            "date": report.now(),
            "command": report.command(),
            "machine": report.machine(),
            "tools": tools,
            "placement": {
                "target": placement.target,
                "upstream": placement.upstream,
                "loadgen": placement.loadgen,
                "text": placement.text,
            },
            "upstream": (
                "benchmarks.upstream (raw asyncio protocol on uvloop)"
                if args.upstream == "builtin"
                else "lmrouter.testing.fake_openai (aiohttp.web)"
            )
            + f", {args.upstream_workers} process(es), {args.chunks} chunks per stream, "
            "no delays",
            "loadavg_start": load_start,
            "loadavg_end": report.loadavg(),
            "quick": args.quick,
        },
        "params": {
            "rounds": args.rounds,
            "duration_s": args.duration,
            "latency_duration_s": args.latency_duration,
            "connections": args.connections,
            "rate": args.rate,
            "targets": list(started),
            "chunks": args.chunks,
        },
        "runs": [m.to_json() for m in runs],
        "summary": summary,
        "notes": notes,
    }
    md = report.markdown(result)
    RESULTS.mkdir(exist_ok=True)
    stem = "quick" if args.quick else "latest"
    for suffix, text in ((".json", json.dumps(result, indent=2) + "\n"), (".md", md)):
        tmp = RESULTS / f"{stem}{suffix}.tmp"
        tmp.write_text(text)
        tmp.replace(RESULTS / f"{stem}{suffix}")
    print(md)
    errors = sum(m.error_total for m in runs)
    if errors or any("failed" in n for n in notes):
        print(f"errors: {errors} failed or dropped requests; see the table", file=sys.stderr)
        return 1
    if args.strict and not all(summary["router_pass"].values()):
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
