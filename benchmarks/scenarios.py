"""The measurement plan: which load, against which target, in which order, and what is sampled.

Scenarios run one at a time, each against every target in turn, so the figures compared were
taken within seconds of each other. Every run is wrapped by :func:`sampled`, which adds the CPU
time of the target's process group (and of the upstream and the load generator) and the peak of
the group's summed RSS.
"""

from __future__ import annotations

import json
import os
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from benchmarks import loadgen, report, targets
from benchmarks.loadgen import Measurement
from benchmarks.procs import (
    HAVE_TASKSET,
    Proc,
    RssSampler,
    children_cpu_s,
    group_memory,
    group_pids,
    group_schedstat,
)
from benchmarks.targets import Target

JSON_BODY = b'{"model":"bench","messages":[{"role":"user","content":"hi"}]}'
STREAM_BODY = b'{"model":"bench","messages":[{"role":"user","content":"hi"}],"stream":true}'
SLOW_BODY = b'{"model":"bench-slow","messages":[{"role":"user","content":"hi"}],"stream":true}'
BODIES = {"json": JSON_BODY, "stream": STREAM_BODY, "slow": SLOW_BODY}
SCENARIOS = ("latency", "throughput", "ttft", "sweep", "streams")
PEER_RATES = (25, 50, 100)


@dataclass
class Placement:
    target: str | None  # the proxy under test
    upstream: str | None
    loadgen: str | None
    text: str

    @property
    def shared(self) -> bool:
        """The upstream and the load generator share one CPU (a 2-core machine)."""
        return self.upstream is not None and self.upstream == self.loadgen


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
            "`direct` runs the load generator and the upstream on that one CPU)",
        )
    rest = ",".join(str(c) for c in cpus[2:])
    return Placement(
        first,
        second,
        rest,
        f"target under test on CPU {first}, upstream on CPU {second}, "
        f"load generator on CPUs {rest}",
    )


def post(url: str, body: bytes, key: str) -> urllib.request.Request:
    return urllib.request.Request(
        url,
        data=body,
        method="POST",
        headers={"Content-Type": "application/json", "Authorization": f"Bearer {key}"},
    )


def sanity_check(target: Target, chunks: int) -> str:
    """One real answer of each kind before any load: a target that answers wrongly is broken,
    not fast. The router must also refuse a wrong key (so auth is really on) and report
    ``usage.cost``."""
    with urllib.request.urlopen(post(target.url, JSON_BODY, target.key), timeout=30) as response:
        raw = response.read()
        headers = response.headers
        if response.status != 200:
            raise RuntimeError(f"{target.name}: HTTP {response.status} {raw[:200]!r}")
    doc = json.loads(raw)
    if not doc["choices"][0]["message"]["content"]:
        raise RuntimeError(f"{target.name}: empty completion: {raw[:200]!r}")
    extra = ""
    if target.role == "router":
        if "cost" not in doc.get("usage", {}):
            raise RuntimeError(f"{target.name}: no usage.cost in {raw[:300]!r}")
        try:
            urllib.request.urlopen(post(target.url, JSON_BODY, "sk-wrong"), timeout=10).close()
            raise RuntimeError(f"{target.name}: a wrong key was accepted")
        except urllib.error.HTTPError as exc:
            if exc.code != 401:
                raise RuntimeError(f"{target.name}: a wrong key got HTTP {exc.code}") from None
        limits = sorted(k.lower() for k in headers if k.lower().startswith("x-ratelimit-"))
        extra = "; wrong key 401" + (f"; headers {', '.join(limits)}" if limits else "")
    with urllib.request.urlopen(post(target.url, STREAM_BODY, target.key), timeout=30) as response:
        ctype = response.headers.get("content-type", "")
        stream = response.read()
    events = stream.count(b"data: ")
    # A peer may split or merge events its own way; ours must relay all of them.
    least = chunks if target.role == "peer" else chunks + 2
    if (
        not ctype.startswith("text/event-stream")
        or not stream.rstrip().endswith(b"data: [DONE]")
        or events < least
    ):
        raise RuntimeError(
            f"{target.name}: bad stream ({ctype}, {events} events): {stream[-200:]!r}"
        )
    return f"json {len(raw)} B, stream {events} events / {len(stream)} B{extra}"


def start_upstream(args: Any, workdir: Path, placement: Placement) -> Target:
    pacing = [
        "--first-byte-delay",
        str(args.upstream_delay / 1000),
        "--jitter",
        str(args.upstream_jitter / 1000),
        "--slow-chunks",
        str(args.slow_chunks),
        "--slow-chunk-delay",
        str(args.slow_chunk_delay),
    ]
    return targets.start_upstream(
        workdir,
        placement.upstream,
        workers=args.upstream_workers,
        chunks=args.chunks,
        kind=args.upstream,
        pacing=pacing,
    )


def server_errors(target: Target) -> tuple[int, str]:
    """Errors the router logged (JSON lines at level error) and the last line of the first one:
    a plugin that fails in ``request_end`` never shows in a status code, but it would make the
    router look cheaper than it is."""
    count, first = 0, ""
    for proc in target.procs:
        try:
            lines = proc.log.read_text(errors="replace").splitlines()
        except OSError:
            continue
        for line in lines:
            if '"level":"error"' not in line and '"level": "error"' not in line:
                continue
            count += 1
            if not first:
                try:
                    doc = json.loads(line)
                except ValueError:
                    first = line[:300]
                    continue
                trace = str(doc.get("exception", "")).strip().splitlines()
                first = f"{doc.get('event')}: {trace[-1] if trace else ''}"[:300]
    return count, first


def idle_memory_mb(target: Target, upstream: Target) -> tuple[float, float]:
    """(RSS, PSS) of the target's process group at rest, after its first requests."""
    pgids = [p.popen.pid for p in (target.procs or upstream.procs)]
    rss, pss = group_memory(group_pids(pgids))
    return round(rss / 2**20, 1), round(pss / 2**20, 1)


@dataclass
class Bench:
    """What every scenario needs: the parsed options and the running processes."""

    args: object  # argparse.Namespace
    started: dict[str, Target]
    upstream: Target
    placement: Placement
    workdir: Path
    k6: str | None
    procs: list[Proc]

    # -- one run of one tool against one target --------------------------------------------

    def wrk(self, kind: str, conns: int, seconds: float, scenario: str = "") -> Callable:
        return lambda t: loadgen.run_wrk(
            target=t.name,
            scenario=scenario or f"{kind}-c{conns}",
            url=t.url,
            body=BODIES[kind],
            connections=conns,
            duration=seconds,
            cpus=self.placement.loadgen,
            workdir=self.workdir,
            key=t.key,
            timeout=30.0 if kind == "slow" else 10.0,
        )

    def open_loop(self, rate: int, seconds: float) -> Callable:
        return lambda t: loadgen.run_k6(
            binary=self.k6 or "k6",
            target=t.name,
            scenario="sweep",
            url=t.url,
            body=JSON_BODY,
            duration=seconds,
            cpus=self.placement.loadgen,
            rate=rate,
            max_vus=512,
            key=t.key,
        )

    def ttft(self, seconds: float) -> Callable:
        return lambda t: loadgen.run_ttft(
            target=t.name,
            url=t.url,
            body=STREAM_BODY,
            duration=seconds,
            cpus=self.placement.loadgen,
            key=t.key,
        )

    def sampled(self, run: Callable[[Target], Measurement], target: Target) -> Measurement:
        """``run(target)`` with the CPU time of the target, the upstream and the load
        generator, and the peak RSS of the target's process group."""
        mine = [p.popen.pid for p in (target.procs or self.upstream.procs)]
        theirs = [p.popen.pid for p in self.upstream.procs]
        cpu0, wait0 = group_schedstat(mine)
        up0, _ = group_schedstat(theirs)
        gen0 = children_cpu_s()
        with RssSampler(mine) as rss:
            m = run(target)
        cpu1, wait1 = group_schedstat(mine)
        up1, _ = group_schedstat(theirs)
        gen1 = children_cpu_s()
        m.peak_rss_mb = round(rss.peak / 2**20, 1)
        m.peak_pss_mb = round(rss.peak_pss / 2**20, 1)
        if m.duration_s and m.requests:
            ns = m.duration_s * 1e9
            m.cpu_us_per_req = round((cpu1 - cpu0) / 1000 / m.requests, 1)
            m.target_cpu_pct = round(100 * (cpu1 - cpu0) / ns, 1)
            m.target_wait_pct = round(100 * (wait1 - wait0) / ns, 1)
            m.upstream_cpu_pct = round(100 * (up1 - up0) / ns, 1)
            m.loadgen_cpu_pct = round(100 * (gen1 - gen0) / m.duration_s, 1)
        return m

    def check_alive(self) -> None:
        for proc in self.procs:
            if not proc.alive():
                raise RuntimeError(f"{proc.name} died ({proc.popen.returncode}):\n{proc.tail()}")

    def show(self, m: Measurement) -> None:
        offered = f" @{m.rate:g}/s" if m.rate else ""
        print(
            f"{m.scenario + offered:<15} {m.target:<14} {m.rps:>9,.0f} req/s  "
            f"p50 {report.fmt(m.p50_ms, 3)}  p99 {report.fmt(m.p99_ms, 3)} ms  "
            f"ttft p50 {report.fmt(m.ttft_p50_ms, 3)}  "
            f"cpu {report.fmt(m.cpu_us_per_req, 0)} us/req  rss {report.fmt(m.peak_rss_mb, 0)} MB  "
            f"errors {m.error_total} {m.note}",
            file=sys.stderr,
        )

    # -- the plan ---------------------------------------------------------------------------

    def estimate(self, only: set[str]) -> float:
        a = self.args
        n = len(self.started)
        per = 0.0
        if "latency" in only:
            per += 2 * (a.latency_duration + 0.5)
        if "throughput" in only:
            per += 2 * (a.duration + 0.5 * a.rounds) + 2 * (a.warmup + 0.5)
        if "ttft" in only:
            per += a.latency_duration + 1
        if "sweep" in only and self.k6:
            per += 0.7 * len(a.rate_list) * (a.step_duration + 1.5)
        if "streams" in only:
            per += a.streams_duration + 3
        pairs = 0
        if "throughput" in only:
            pairs = sum(x in self.started and y in self.started for x, y in report.PLUGIN_PAIRS)
        return n * per + pairs * 2 * a.pair_rounds * 2 * (a.pair_round + 0.3)

    def measure(self, only: set[str]) -> list[Measurement]:
        a = self.args
        runs: list[Measurement] = []
        if "throughput" in only or "latency" in only:
            for target in self.started.values():  # connection pools, first-call paths
                for kind in ("json", "stream"):
                    m = self.wrk(kind, a.connections, a.warmup)(target)
                    if m.error_total:
                        print(f"warm-up {target.name} {kind}: {m.errors} {m.note}", file=sys.stderr)
        rounds = max(1, a.rounds)
        plan: list[tuple[str, Callable, int]] = []
        if "latency" in only:
            plan.append(("latency", self.wrk("json", 1, a.latency_duration), 1))
        if "throughput" in only:
            plan.append(
                ("throughput", self.wrk("json", a.connections, a.duration / rounds), rounds)
            )
        if "latency" in only:
            plan.append(("latency", self.wrk("stream", 1, a.latency_duration), 1))
        if "throughput" in only:
            plan.append(
                ("throughput", self.wrk("stream", a.connections, a.duration / rounds), rounds)
            )
        if "ttft" in only:
            plan.append(("ttft", self.ttft(a.latency_duration), 1))
        for _, run, n in plan:
            runs += self.counterbalanced(run, list(self.started.values()), n, pause=0.5, show=True)
        if "throughput" in only:
            runs += self.plugin_pairs()
        if "sweep" in only and self.k6:
            runs += self.sweep()
        if "streams" in only:
            runs += self.streams()
        self.check_alive()
        return runs

    def counterbalanced(
        self, run: Callable, order: list[Target], n: int, pause: float, show: bool = False
    ) -> list[Measurement]:
        """``n`` rounds of ``run`` on each target, in counterbalanced order (A B C, C B A, A B C…):
        this machine drifts by several percent within a minute, and a fixed order would hand the
        same target the fresher slot of every round. Each target's best round, in ``order``
        (outside load only ever slows a round down); ratios pair targets round by round."""
        done: dict[str, list[Measurement]] = {target.name: [] for target in order}
        for index in range(n):
            for target in order if index % 2 == 0 else order[::-1]:
                self.check_alive()
                m = self.sampled(run, target)
                done[target.name].append(m)
                if show:
                    self.show(m)
                time.sleep(pause)
        return [best(ms) for ms in done.values()]

    def plugin_pairs(self) -> list[Measurement]:
        """What a plugin set costs, measured as closely as this machine allows: each router and
        the same router without those plugins, back to back in short rounds (A B, B A, A B…),
        so the two figures of a round are seconds apart. The rounds above put a target and its
        baseline up to half a minute apart, and in that time this machine's speed wanders by
        more than the 5 % asked of the rate limiter. Scenario ``KIND-pair-TARGET-BASE``, for
        both targets of the pair."""
        a = self.args
        out = []
        for name, base in report.PLUGIN_PAIRS:
            if name not in self.started or base not in self.started:
                continue
            pair = [self.started[name], self.started[base]]
            for kind in ("json", "stream"):
                scenario = report.pair_scenario(kind, name, base)
                run = self.wrk(kind, a.connections, a.pair_round, scenario=scenario)
                mine, theirs = self.counterbalanced(run, pair, a.pair_rounds, pause=0.2)
                out += [mine, theirs]
                print(
                    f"{scenario:<28} {name} ÷ {base}: req/s "
                    f"{report.fmt(report.mean_ratio(report.paired(mine, theirs, 'rps')), 3)}",
                    file=sys.stderr,
                )
        return out

    def sweep(self) -> list[Measurement]:
        """Open loop at rising rates, every target at one rate before the next rate. A target
        leaves the sweep after its first step with errors or dropped arrivals (its capacity),
        or when CPU 1 (upstream + load generator) was the limit instead of the target. A peer
        (LiteLLM) also gets a few lower rates first, since it saturates below the first one."""
        a = self.args
        active = list(self.started.values())
        low = [r for r in PEER_RATES if r < a.rate_list[0]]
        out = []
        for rate in [*low, *a.rate_list]:
            floor_failed = False  # `direct` could not take this rate: CPU 1 is the limit
            for target in list(active):
                if rate in low and target.role != "peer":
                    continue
                self.check_alive()
                m = self.sampled(self.open_loop(rate, a.step_duration), target)
                if m.error_total:
                    # One retry before a target leaves the sweep: on a shared machine a burst
                    # of outside load can drop a few arrivals once. The step with fewer errors
                    # is kept, and the retry is noted.
                    self.show(m)
                    time.sleep(1.0)
                    again = self.sampled(self.open_loop(rate, a.step_duration), target)
                    kept = min((m, again), key=lambda x: (x.error_total, x.p99_ms or 0))
                    kept.note = (
                        f"{kept.note} retried: errors {m.error_total} then {again.error_total}"
                    ).strip()
                    m = kept
                m.saturated = m.error_total > 0
                m.loadgen_bound = False
                if self.placement.loadgen is not None and m.loadgen_cpu_pct is not None:
                    cpu1 = m.loadgen_cpu_pct + (
                        (m.upstream_cpu_pct or 0) if self.placement.shared else 0
                    )
                    m.loadgen_bound = cpu1 >= 90
                if m.saturated and floor_failed:
                    m.loadgen_bound = True
                if target.name == "direct" and (m.saturated or m.loadgen_bound):
                    floor_failed = True
                out.append(m)
                self.show(m)
                if m.saturated or m.loadgen_bound:
                    active.remove(target)
                time.sleep(0.5)
            if not active or floor_failed:
                break
        return out

    def streams(self) -> list[Measurement]:
        """Many slow streams at once (``--streams`` connections, each stream ``--slow-chunks``
        events ``--slow-chunk-delay`` apart): memory and relay cost per open stream."""
        a = self.args
        out = []
        for target in self.started.values():
            self.check_alive()
            run = self.wrk("slow", a.streams, a.streams_duration, scenario=f"streams-c{a.streams}")
            m = self.sampled(run, target)
            out.append(m)
            self.show(m)
            time.sleep(1.0)  # let the last streams' connections close before the next target
        return out


def best(rounds: list[Measurement]) -> Measurement:
    """The round with the most req/s, with the errors of every round added to it."""
    if len(rounds) == 1:
        return rounds[0]
    top = max(rounds, key=lambda m: m.rps)
    errors: dict[str, int] = {}
    for m in rounds:
        for key, value in m.errors.items():
            errors[key] = errors.get(key, 0) + value
    top.errors = errors
    top.round_rps = [m.rps for m in rounds]
    top.round_cpu_us = [m.cpu_us_per_req for m in rounds]
    top.peak_rss_mb = max(m.peak_rss_mb or 0 for m in rounds) or None
    top.peak_pss_mb = max(m.peak_pss_mb or 0 for m in rounds) or None
    top.note = (top.note + f" best of {len(rounds)} rounds").strip()
    return top
