"""``python -m benchmarks``: what the router costs, side by side with its peers, in one run.

Starts the fake upstream and each target on its own port, pinned to CPUs; drives them with wrk
(closed loop, and many slow streams), k6 (open-loop rate sweep) and ``benchmarks.ttft`` (time to
first token); writes ``benchmarks/results/latest.{json,md,png}`` and prints the Markdown. Every
process it starts is stopped on the way out. ``--profile`` instead records the router's worker
with py-spy under load (see ``benchmarks/profile.py``).
"""

from __future__ import annotations

import argparse
import json
import shutil
import signal
import sys
import tempfile
from pathlib import Path
from typing import Any

from benchmarks import loadgen, peers, plot, report, scenarios, targets
from benchmarks.loadgen import Measurement
from benchmarks.procs import Proc, wait_ready
from benchmarks.scenarios import JSON_BODY, Bench, Placement, post
from benchmarks.targets import Skip, Target

RESULTS = Path(__file__).resolve().parent / "results"
ROUTERS = tuple(f"router-{name}" for name in targets.PLUGIN_SETS)
TARGETS = ("direct", "nginx", "aiohttp-proxy", *ROUTERS, "litellm")
DEFAULT_TARGETS = ",".join(TARGETS[:-1])
DEFAULT_RATES = "250,500,1000,2000,4000,8000"


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(
        prog="python -m benchmarks",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    add = p.add_argument
    add("--targets", default=DEFAULT_TARGETS, help=f"comma-separated, from {','.join(TARGETS)}")
    add("--peers", action="store_true", help="add LiteLLM (installed into the tools cache)")
    add(
        "--only",
        default=",".join(scenarios.SCENARIOS),
        help=f"scenarios to run, from {','.join(scenarios.SCENARIOS)} (default: all)",
    )
    add("--duration", type=float, default=12.0, help="closed-loop throughput, per payload (12 s)")
    add(
        "--rounds",
        type=int,
        default=4,
        help="throughput: rounds in counterbalanced order, best kept, ratios paired per round (4)",
    )
    add(
        "--pair-rounds",
        type=int,
        default=6,
        help="plugin cost: back-to-back rounds per router and its baseline (6)",
    )
    add("--pair-round", type=float, default=2.0, help="plugin cost: seconds per round (2 s)")
    add("--connections", type=int, default=32, help="throughput runs (default 32)")
    add("--latency-duration", type=float, default=4.0, help="one-connection runs, TTFT (4 s)")
    add("--warmup", type=float, default=2.0, help="seconds per payload before measuring (2 s)")
    add("--rates", default=DEFAULT_RATES, help=f"open-loop sweep, req/s ({DEFAULT_RATES})")
    add("--step-duration", type=float, default=4.0, help="seconds per sweep step (4 s)")
    add("--streams", type=int, default=1000, help="concurrent slow streams (1000)")
    add("--streams-duration", type=float, default=10.0, help="slow-streams run (10 s)")
    add("--chunks", type=int, default=20, help="content events per stream, no delays (20)")
    add("--slow-chunks", type=int, default=20, help="content events per slow stream (20)")
    add("--slow-chunk-delay", type=float, default=0.05, help="seconds between them (0.05)")
    add("--upstream-delay", type=float, default=0.0, help="ms before the first byte (0)")
    add("--upstream-jitter", type=float, default=0.0, help="up to this many more ms, random (0)")
    add(
        "--upstream",
        choices=("builtin", "fake-openai"),
        default="builtin",
        help="builtin: benchmarks.upstream (raw asyncio, fastest); fake-openai: "
        "lmrouter.testing.fake_openai (aiohttp.web, the tests' faithful fake)",
    )
    add("--upstream-workers", type=int, default=1, help="upstream processes (SO_REUSEPORT)")
    add("--quick", action="store_true", help="short runs into results/quick.*: a smoke test")
    add("--no-k6", action="store_true", help="skip the open-loop sweep")
    add("--no-pin", action="store_true", help="do not pin processes with taskset")
    add("--keep", action="store_true", help="on failure, leave the processes running")
    add("--strict", action="store_true", help="exit 2 when a target of the issue is missed")
    add("--profile", action="store_true", help="py-spy the router worker instead (see README)")
    add("--profile-duration", type=float, default=10.0, help="seconds per profile (10)")
    args = p.parse_args(argv)
    if args.quick:
        args.duration = min(args.duration, 2.0)
        args.rounds = 1
        args.pair_rounds, args.pair_round = 2, 1.0
        args.latency_duration = min(args.latency_duration, 2.0)
        args.warmup = min(args.warmup, 1.0)
        args.step_duration = min(args.step_duration, 2.0)
        args.streams_duration = min(args.streams_duration, 3.0)
        args.profile_duration = min(args.profile_duration, 3.0)
        if args.rates == DEFAULT_RATES:
            args.rates = "500,2000"
    names = [n.strip() for n in args.targets.split(",") if n.strip()]
    if args.peers and "litellm" not in names:
        names.append("litellm")
    unknown = set(names) - set(TARGETS)
    if unknown:
        p.error(f"unknown targets: {', '.join(sorted(unknown))}")
    args.target_names = names
    args.only_set = {s.strip() for s in args.only.split(",") if s.strip()}
    if args.only_set - set(scenarios.SCENARIOS):
        p.error(f"unknown scenarios: {', '.join(sorted(args.only_set - set(scenarios.SCENARIOS)))}")
    try:
        args.rate_list = sorted({int(r) for r in args.rates.split(",") if r.strip()})
    except ValueError:
        p.error(f"--rates: integers, comma-separated, not {args.rates!r}")
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))  # so `finally` cleans up
    if args.profile:
        from benchmarks import profile

        return profile.main(args)
    placement = scenarios.plan_cpus(args.no_pin)
    notes: list[str] = []
    skipped: dict[str, str] = {}
    tools: dict[str, str | None] = {"wrk": loadgen.ensure_wrk()}
    k6 = None if args.no_k6 or "sweep" not in args.only_set else loadgen.ensure_k6()
    if k6 is None and "sweep" in args.only_set and not args.no_k6:
        notes.append("k6 unavailable: no open-loop sweep in this run")
    tools["k6"] = k6[1] if k6 else None
    workdir = Path(tempfile.mkdtemp(prefix="lmrouter-bench-"))
    procs: list[Proc] = []
    started: dict[str, Target] = {}
    idle_rss: dict[str, float] = {}
    idle_pss: dict[str, float] = {}
    runs: list[Measurement] = []
    failed = True
    load_start = report.loadavg()
    bench = None
    try:
        upstream = scenarios.start_upstream(args, workdir, placement)
        procs += upstream.procs
        wait_ready(upstream.procs[0], post(upstream.url, JSON_BODY, "sk-upstream"))
        for name in args.target_names:
            try:
                target = start_target(name, workdir, placement, upstream)
            except Skip as exc:
                skipped[name] = str(exc)
                print(f"skipped: {name}: {exc}", file=sys.stderr)
                continue
            procs += target.procs + target.helpers
            ready = 300 if target.role == "peer" else 90  # LiteLLM imports for a minute or more
            try:
                if target.procs:
                    probe = post(target.url, JSON_BODY, target.key)
                    wait_ready(target.procs[0], probe, timeout=ready)
                detail = scenarios.sanity_check(target, args.chunks)
            except (RuntimeError, OSError, LookupError, ValueError, TypeError) as exc:
                skipped[name] = f"failed to start or answered wrongly: {exc}"
                notes.append(f"{name} failed to start or answered wrongly, skipped: {exc}")
                print(f"error: {notes[-1]}", file=sys.stderr)
                if not args.keep:
                    for proc in target.procs + target.helpers:
                        proc.stop()
                        procs.remove(proc)
                continue
            idle_rss[name], idle_pss[name] = scenarios.idle_memory_mb(target, upstream)
            print(f"ready: {name:<14} {target.url}  ({detail})", file=sys.stderr)
            started[name] = target
        bench = Bench(args, started, upstream, placement, workdir, k6[0] if k6 else None, procs)
        print(
            f"measuring {', '.join(started)}: about {bench.estimate(args.only_set):.0f} s",
            file=sys.stderr,
        )
        runs = bench.measure(args.only_set)
        failed = False
    except RuntimeError as exc:
        print(f"error: {exc}", file=sys.stderr)
    finally:
        extras: dict[str, Any] = {"server_errors": {}}
        for name, target in started.items():
            if target.role == "router":
                count, first = scenarios.server_errors(target)
                extras["server_errors"][name] = count
                if count:
                    notes.append(f"{name} logged {count} errors during the run; the first: {first}")
        if not failed:
            extras["credits_spent_usd"] = {
                name: targets.credits_spent(target)
                for name, target in started.items()
                if target.role == "router"
            }
            extras["otel_spans"] = {
                name: targets.spans_exported(target)
                for name, target in started.items()
                if target.collector is not None
            }
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
    for name, target in started.items():
        if target.version:
            tools[name] = target.version
    idle = {"rss": idle_rss, "pss": idle_pss}
    return write(args, runs, placement, tools, notes, skipped, idle, extras, load_start)


def start_target(name: str, workdir: Path, placement: Placement, upstream: Target) -> Target:
    cpus, port, tools = placement.target, upstream.port, loadgen.TOOLS_DIR
    if name == "direct":
        return Target("direct", port, key="sk-upstream")
    if name == "aiohttp-proxy":
        return targets.start_aiohttp_proxy(workdir, cpus, port)
    if name in ROUTERS:
        return targets.start_router(workdir, cpus, port, name.removeprefix("router-"))
    if name == "nginx":
        return peers.start_nginx(workdir, cpus, port, tools)
    return peers.start_litellm(workdir, cpus, port, tools)


def write(
    args: argparse.Namespace,
    runs: list[Measurement],
    placement: Placement,
    tools: dict[str, str | None],
    notes: list[str],
    skipped: dict[str, str],
    idle: dict[str, dict[str, float]],
    extras: dict[str, Any],
    load_start: list[float],
) -> int:
    for m in runs:  # a saturated one-worker target uses all of its CPU; less means it was robbed
        saturating = m.scenario == f"json-c{args.connections}" and m.target != "direct"
        if saturating and m.target_cpu_pct is not None and m.target_cpu_pct < 75:
            notes.append(
                f"{m.scenario} {m.target}: the target used only {m.target_cpu_pct:.0f} % of its "
                f"CPU under saturating load (run-queue wait {m.target_wait_pct:.0f} %): other "
                "work took CPU 0, so its req/s is low; prefer the CPU-per-request ratio"
            )
    summary = report.summarize(
        runs, args.connections, args.streams, idle, extras.get("server_errors", {})
    )
    stem = "quick" if args.quick else "latest"
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
            "upstream": report.upstream_text(args),
            "loadavg_start": load_start,
            "loadavg_end": report.loadavg(),
            "quick": args.quick,
            "plot": f"{stem}.png",
        },
        "params": {
            key: getattr(args, key)
            for key in (
                "rounds",
                "pair_rounds",
                "pair_round",
                "duration",
                "latency_duration",
                "connections",
                "rate_list",
                "step_duration",
                "streams",
                "streams_duration",
                "chunks",
                "slow_chunks",
                "slow_chunk_delay",
                "upstream_delay",
                "upstream_jitter",
            )
        }
        | {"targets": args.target_names, "scenarios": sorted(args.only_set)},
        "skipped": skipped,
        "idle_memory_mb": idle,
        "runs": [m.to_json() for m in runs],
        "summary": summary,
        "extras": extras,
        "notes": notes,
    }
    RESULTS.mkdir(exist_ok=True)
    png = plot.latency_png([m for m in runs if m.scenario == "sweep"], summary)
    md = report.markdown(result)
    outputs = {
        ".json": (json.dumps(result, indent=2) + "\n").encode(),
        ".md": md.encode(),
        ".png": png,
    }
    for suffix, data in outputs.items():
        tmp = RESULTS / f"{stem}{suffix}.tmp"
        tmp.write_bytes(data)
        tmp.replace(RESULTS / f"{stem}{suffix}")
    print(md)
    errors = sum(m.error_total for m in runs if m.scenario != "sweep")
    errors += sum(extras.get("server_errors", {}).values())
    if errors or any("failed" in n for n in notes):
        print(
            f"errors: {errors} failed requests (outside the sweep) or logged; see the report",
            file=sys.stderr,
        )
        return 1
    if args.strict and not all(v for v in summary["checks_pass"].values() if v is not None):
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
