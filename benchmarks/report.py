"""The machine, the derived figures (added latency, throughput ratio) and the Markdown report."""

from __future__ import annotations

import datetime
import os
import platform
import statistics
import subprocess
import sys
from importlib import metadata
from pathlib import Path
from typing import Any

from benchmarks.loadgen import Measurement

PACKAGES = (
    "granian",
    "aiohttp",
    "orjson",
    "uvloop",
    "starlette",
    "msgspec",
    "pluggy",
    "aiosqlite",
    "lmrouter",
    "lmrouter-openai",
    "lmrouter-accounts",
    "lmrouter-credits",
    "lmrouter-ratelimit",
)


def cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def loadavg() -> list[float]:
    try:
        return [round(x, 2) for x in os.getloadavg()]
    except OSError:
        return []


def machine() -> dict[str, Any]:
    versions: dict[str, str | None] = {}
    for name in PACKAGES:
        try:
            versions[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            versions[name] = None
    return {
        "cpu": cpu_model(),
        "cores": os.cpu_count(),
        "kernel": platform.release(),
        "python": platform.python_version(),
        "packages": versions,
        "git": _git(),
    }


def _git() -> str | None:
    root = Path(__file__).resolve().parent.parent
    try:
        head = subprocess.run(
            ["git", "rev-parse", "--short", "HEAD"],
            cwd=root,
            capture_output=True,
            text=True,
            check=False,
            timeout=10,
        )
        dirty = subprocess.run(
            ["git", "status", "--porcelain"],
            cwd=root,
            capture_output=True,
            text=True,
            check=False,
            timeout=10,
        )
    except (OSError, subprocess.TimeoutExpired):
        return None
    if head.returncode != 0:
        return "no commit yet"
    return head.stdout.strip() + (" (uncommitted changes)" if dirty.stdout.strip() else "")


def now() -> str:
    return datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%d %H:%M:%S UTC")


def command() -> str:
    return " ".join(["python -m benchmarks", *sys.argv[1:]])


def upstream_text(args: Any) -> str:
    kind = (
        "benchmarks.upstream (raw asyncio protocol on uvloop)"
        if args.upstream == "builtin"
        else "lmrouter.testing.fake_openai (aiohttp.web)"
    )
    delay = "no delays"
    if args.upstream_delay or args.upstream_jitter:
        delay = (
            f"{args.upstream_delay:g} ms + up to {args.upstream_jitter:g} ms random to first byte"
        )
    return (
        f"{kind}, {args.upstream_workers} process(es); {args.chunks} chunks per stream, {delay}; "
        f"slow streams (model bench-slow): {args.slow_chunks} chunks "
        f"{args.slow_chunk_delay * 1000:g} ms apart"
    )


# -- derived figures --------------------------------------------------------------------------

BASELINES = ("aiohttp-proxy", "nginx", "litellm")
PCTS = ("p50", "p90", "p99", "p999")
LIMITS = {
    "bare_vs_aiohttp": 0.60,  # router-bare req/s ÷ aiohttp-proxy req/s, json, closed loop
    "bare_vs_litellm": 20.0,  # router-bare req/s ÷ litellm req/s
    "full_added_p50_ms": 1.0,  # router-full minus direct at FULL_RATE, open loop
    "full_added_p99_ms": 5.0,
    "streams_rss_mb": 150.0,  # the router's peak RSS with --streams concurrent slow streams
    "bare_added_p50_c1_ms": 1.0,  # router-bare minus direct, one connection
    "money_vs_bare": 0.85,  # router-money req/s ÷ router-bare req/s: the money path < 15 %
    "ratelimit_vs_bare": 0.95,  # router-ratelimit req/s ÷ router-bare req/s: limits < 5 %
    "full_pg_cpu": 1.5,  # router-full-pg CPU per request ÷ router-full's
}
# What each plugin set costs: (target, the same router without those plugins), same run.
PLUGIN_PAIRS = (
    ("router-money", "router-bare"),
    ("router-ratelimit", "router-bare"),
    ("router-otel", "router-bare"),
    ("router-full", "router-bare"),
    ("router-full", "router-money"),
    ("router-full-pg", "router-full"),  # PostgreSQL + Redis vs SQLite (#16)
    ("router-full-pg-2w", "router-full"),
)
FULL_RATE = 500


def pair_scenario(kind: str, name: str, base: str) -> str:
    """The scenario of a plugin pair's back-to-back rounds (both targets carry it)."""
    return f"{kind}-pair-{name}-{base}"


def _find(
    runs: list[Measurement], target: str, scenario: str, rate: float | None = None
) -> Measurement | None:
    for m in runs:
        same = m.target == target and m.scenario == scenario and m.requests
        if same and (rate is None or m.rate == rate):
            return m
    return None


def _diff(a: float | None, b: float | None) -> float | None:
    return None if a is None or b is None else round(a - b, 3)


ROUNDS = {"rps": "round_rps", "cpu_us_per_req": "round_cpu_us"}


def paired(m: Measurement | None, b: Measurement | None, attr: str) -> list[tuple[float, float]]:
    """``(row, baseline)`` values of ``attr`` to compare: round by round when both ran the same
    rounds (a round's two figures are close in time, so a machine that drifts during the run
    shifts both), else the kept figures."""
    if m is None or b is None:
        return []
    mine, theirs = getattr(m, ROUNDS[attr]), getattr(b, ROUNDS[attr])
    if mine and theirs and len(mine) == len(theirs):
        pairs = [(x, y) for x, y in zip(mine, theirs, strict=True) if x and y]
        if pairs:
            return pairs
    x, y = getattr(m, attr), getattr(b, attr)
    return [(x, y)] if x and y else []


def mean_ratio(pairs: list[tuple[float, float]]) -> float | None:
    """The geometric mean of x ÷ y: the mean of ratios that treats double and half alike."""
    return round(statistics.geometric_mean(x / y for x, y in pairs), 3) if pairs else None


def _added(m: Measurement | None, base: Measurement | None) -> dict[str, float | None] | None:
    if m is None or base is None:
        return None
    return {k: _diff(getattr(m, f"{k}_ms"), getattr(base, f"{k}_ms")) for k in PCTS}


def summarize(
    runs: list[Measurement],
    connections: int,
    streams: int,
    idle: dict[str, dict[str, float]],
    server_errors: dict[str, int],
) -> dict[str, Any]:
    names = list(dict.fromkeys(m.target for m in runs))
    sweep = [m for m in runs if m.scenario == "sweep"]
    per: dict[str, dict[str, Any]] = {}
    for name in names:
        mine = [m for m in runs if m.target == name]
        steps = sorted((m for m in sweep if m.target == name), key=lambda m: m.rate or 0)
        ok_rates = [m.rate for m in steps if not m.saturated and not m.loadgen_bound]
        stop = next((m for m in steps if m.saturated or m.loadgen_bound), None)
        js, st = (
            _find(runs, name, f"json-c{connections}"),
            _find(runs, name, f"stream-c{connections}"),
        )
        many = _find(runs, name, f"streams-c{streams}")
        per[name] = {
            "json_rps": js.rps if js else None,
            "stream_rps": st.rps if st else None,
            "max_rate_ok": max(ok_rates) if ok_rates else None,
            "sweep_stopped_at": None if stop is None else stop.rate,
            "sweep_stop_reason": None
            if stop is None
            else ("CPU 1 (upstream + load generator)" if stop.loadgen_bound else "errors or drops"),
            "cpu_s_per_1k_json": None
            if not js or js.cpu_us_per_req is None
            else round(js.cpu_us_per_req / 1000, 3),
            "cpu_s_per_1k_stream": None
            if not st or st.cpu_us_per_req is None
            else round(st.cpu_us_per_req / 1000, 3),
            "idle_rss_mb": idle["rss"].get(name),
            "idle_pss_mb": idle["pss"].get(name),
            "peak_rss_mb": max((m.peak_rss_mb or 0 for m in mine), default=0) or None,
            "peak_pss_mb": max((m.peak_pss_mb or 0 for m in mine), default=0) or None,
            "streams_peak_rss_mb": many.peak_rss_mb if many else None,
            "streams_peak_pss_mb": many.peak_pss_mb if many else None,
            "streams_rps": many.rps if many else None,
            # Little's law: streams open at once = completions per second x seconds each
            "streams_concurrency": None
            if not many or many.mean_ms is None
            else round(many.rps * many.mean_ms / 1000),
            "errors": sum(m.error_total for m in mine if m.scenario != "sweep"),
            "server_errors": server_errors.get(name),
        }
    added: dict[str, dict[str, Any]] = {}
    for scenario in ("json-c1", "stream-c1"):
        base = _find(runs, "direct", scenario)
        for name in names:
            entry = _added(_find(runs, name, scenario), base) if name != "direct" else None
            if entry:
                added.setdefault(scenario, {})[name] = entry
    for rate in sorted({m.rate for m in sweep if m.rate}):
        base = _find(sweep, "direct", "sweep", rate)
        if base is None or base.saturated:
            continue
        for name in names:
            m = _find(sweep, name, "sweep", rate)
            if name != "direct" and m is not None and not m.saturated:
                added.setdefault(f"open-{rate:g}", {})[name] = _added(m, base)
    ttft: dict[str, Any] = {}
    base = _find(runs, "direct", "stream-ttft")
    for name in names:
        m = _find(runs, name, "stream-ttft")
        if m and base and name != "direct":
            ttft[name] = {
                "ttfb_p50": _diff(m.ttfb_p50_ms, base.ttfb_p50_ms),
                "ttft_p50": _diff(m.ttft_p50_ms, base.ttft_p50_ms),
                "ttft_p90": _diff(m.ttft_p90_ms, base.ttft_p90_ms),
                "ttft_p99": _diff(m.ttft_p99_ms, base.ttft_p99_ms),
            }

    def pair(name: str, base_name: str, plugins: bool = False) -> dict[str, float | None]:
        row = {}
        for kind in ("json", "stream"):
            scenario = f"{kind}-c{connections}"
            if plugins and _find(runs, name, pair_scenario(kind, name, base_name)):
                scenario = pair_scenario(kind, name, base_name)  # this pair's back-to-back rounds
            m = _find(runs, name, scenario)
            b = _find(runs, base_name, scenario)
            rps = paired(m, b, "rps")
            cpu = paired(m, b, "cpu_us_per_req")
            row[f"{kind}_rps"] = mean_ratio(rps)
            # CPU per request, inverted so that above 1 means cheaper, like req/s above 1
            row[f"{kind}_cpu"] = mean_ratio([(y, x) for x, y in cpu])
            # what the plugins add to each request, in CPU µs
            row[f"{kind}_cpu_us_added"] = (
                round(statistics.fmean(x - y for x, y in cpu), 1) if cpu else None
            )
        return row

    ratios: dict[str, dict[str, Any]] = {}
    for name in names:
        if name in ("direct", "nginx", "aiohttp-proxy"):  # baselines are the columns
            continue
        for base_name in BASELINES:
            if base_name == name or base_name not in per:
                continue
            row = pair(name, base_name)
            ratios.setdefault(name, {})[base_name] = {
                k: v for k, v in row.items() if not k.endswith("_added")
            }
    plugin_cost: dict[str, dict[str, Any]] = {}
    for name, base_name in PLUGIN_PAIRS:
        if name in per and base_name in per:
            plugin_cost.setdefault(name, {})[base_name] = pair(name, base_name, plugins=True)
    checks = _checks(per, added, ratios, plugin_cost)
    return {
        "targets": per,
        "added_latency_ms": added,
        "ttft_overhead_ms": ttft,
        "ratios": ratios,
        "plugin_cost": plugin_cost,
        "checks": checks,
        "checks_pass": {k: v["pass"] for k, v in checks.items()},
        "limits": LIMITS,
    }


def _checks(
    per: dict[str, Any], added: dict[str, Any], ratios: dict[str, Any], plugin_cost: dict[str, Any]
) -> dict[str, dict[str, Any]]:
    def check(value: float | None, limit: float, above: bool, text: str) -> dict[str, Any]:
        ok = None if value is None else (value >= limit if above else value < limit)
        return {"value": value, "limit": limit, "pass": ok, "text": text}

    bare = ratios.get("router-bare", {})
    at = added.get(f"open-{FULL_RATE}", {}).get("router-full") or {}
    out = {
        "bare_vs_aiohttp": check(
            bare.get("aiohttp-proxy", {}).get("json_rps"),
            LIMITS["bare_vs_aiohttp"],
            True,
            "router-bare req/s ÷ aiohttp-proxy req/s (json, closed loop) ≥ 0.60",
        ),
        "bare_vs_litellm": check(
            bare.get("litellm", {}).get("json_rps"),
            LIMITS["bare_vs_litellm"],
            True,
            "router-bare req/s ÷ LiteLLM req/s (json, closed loop) ≥ 20",
        ),
        "full_added_p50_ms": check(
            at.get("p50"),
            LIMITS["full_added_p50_ms"],
            False,
            f"router-full adds < 1 ms p50 at {FULL_RATE} req/s (open loop, minus direct)",
        ),
        "full_added_p99_ms": check(
            at.get("p99"),
            LIMITS["full_added_p99_ms"],
            False,
            f"router-full adds < 5 ms p99 at {FULL_RATE} req/s (open loop, minus direct)",
        ),
        "bare_added_p50_c1_ms": check(
            added.get("json-c1", {}).get("router-bare", {}).get("p50"),
            LIMITS["bare_added_p50_c1_ms"],
            False,
            "router-bare adds < 1 ms p50 at one connection (json, minus direct)",
        ),
    }
    for name in ("router-bare", "router-full"):
        out[f"streams_rss_mb_{name}"] = check(
            per.get(name, {}).get("streams_peak_rss_mb"),
            LIMITS["streams_rss_mb"],
            False,
            f"{name} peak RSS < 150 MB with the concurrent slow streams",
        )
    out["money_vs_bare"] = check(
        plugin_cost.get("router-money", {}).get("router-bare", {}).get("json_rps"),
        LIMITS["money_vs_bare"],
        True,
        "router-money req/s ÷ router-bare req/s (json, back-to-back rounds) ≥ 0.85: "
        "accounts + credits cost < 15 % (#4)",
    )
    out["ratelimit_vs_bare"] = check(
        plugin_cost.get("router-ratelimit", {}).get("router-bare", {}).get("json_rps"),
        LIMITS["ratelimit_vs_bare"],
        True,
        "router-ratelimit req/s ÷ router-bare req/s (json, back-to-back rounds) ≥ 0.95: "
        "rate limiting costs < 5 % (#5)",
    )
    pg = plugin_cost.get("router-full-pg", {}).get("router-full", {}).get("json_cpu")
    out["full_pg_cpu"] = check(
        None if pg is None else round(1 / pg, 2),
        LIMITS["full_pg_cpu"],
        False,
        "router-full-pg CPU per request ÷ router-full's (json, back-to-back rounds, PostgreSQL "
        "and Redis counted) < 1.5 (#16)",
    )
    pg_at = added.get(f"open-{FULL_RATE}", {}).get("router-full-pg") or {}
    out["full_pg_added_p99_ms"] = check(
        pg_at.get("p99"),
        LIMITS["full_added_p99_ms"],
        False,
        f"router-full-pg adds < 5 ms p99 at {FULL_RATE} req/s (open loop, minus direct) (#16)",
    )
    return out


# -- Markdown ---------------------------------------------------------------------------------


def fmt(value: float | None, digits: int = 2) -> str:
    return "-" if value is None else f"{value:,.{digits}f}"


def _verdict(ok: bool | None) -> str:
    return {True: "pass", False: "**MISS**", None: "not measured"}[ok]


def _errors(m: Measurement) -> str:
    if not m.error_total:
        return "0"
    return ", ".join(f"{k} {v}" for k, v in m.errors.items() if v)


def _pair(a: float | None, b: float | None) -> str:
    return "-" if a is None else f"{a:,.0f} / {fmt(b, 0)}"


def _table(head: list[str], align: str, rows: list[list[str]]) -> list[str]:
    return [
        "| " + " | ".join(head) + " |",
        "|" + "|".join("--:" if a == "r" else "---" for a in align) + "|",
        *("| " + " | ".join(row) + " |" for row in rows),
        "",
    ]


def markdown(result: dict[str, Any]) -> str:
    meta, params, summ = result["meta"], result["params"], result["summary"]
    runs = [
        Measurement(**{k: v for k, v in r.items() if k != "error_total"}) for r in result["runs"]
    ]
    c, streams = params["connections"], params["streams"]
    lines = ["# LMRouter overhead benchmark", ""]
    lines += _table(
        ["target of the issue", "measured", "verdict"],
        "lrl",
        [[ch["text"], fmt(ch["value"], 3), _verdict(ch["pass"])] for ch in summ["checks"].values()],
    )
    lines += [
        f"- date: {meta['date']}; git: {meta['machine']['git']}",
        f"- command: `{meta['command']}`",
        f"- machine: {meta['machine']['cpu']}, {meta['machine']['cores']} cores, "
        f"Linux {meta['machine']['kernel']}; load average at start {meta['loadavg_start']}, "
        f"at end {meta['loadavg_end']}",
        f"- Python {meta['machine']['python']}; "
        + ", ".join(f"{k} {v}" for k, v in meta["machine"]["packages"].items() if v),
        "- tools: " + "; ".join(f"{k}: {v}" for k, v in meta["tools"].items() if v),
        f"- CPU placement: {meta['placement']['text']}",
        f"- upstream: {meta['upstream']}",
    ]
    for name, why in result.get("skipped", {}).items():
        lines.append(f"- **skipped: {name}** — {why}")
    lines += [
        "",
        "Compare targets within one run, not across runs: the machine is shared and small. "
        "req/s counts 2xx answers only; latencies are of successful requests.",
        "",
        "## Per target",
        "",
    ]
    per = summ["targets"]
    lines += _table(
        [
            "target",
            f"json req/s (c{c})",
            f"stream req/s (c{c})",
            "open loop: highest rate w/o drops",
            "sweep stopped by",
            "CPU s / 1k json",
            "CPU s / 1k stream",
            "idle RSS / PSS MB",
            "peak RSS / PSS MB",
            f"peak RSS / PSS MB, {streams} streams",
            "errors (outside sweep)",
            "errors logged by the server",
        ],
        "lrrrlrrrrrrr",
        [
            [
                name,
                fmt(t["json_rps"], 0),
                fmt(t["stream_rps"], 0),
                fmt(t["max_rate_ok"], 0),
                (f"{t['sweep_stop_reason']} at {t['sweep_stopped_at']:g}/s")
                if t["sweep_stopped_at"]
                else "-",
                fmt(t["cpu_s_per_1k_json"], 3),
                fmt(t["cpu_s_per_1k_stream"], 3),
                _pair(t["idle_rss_mb"], t["idle_pss_mb"]),
                _pair(t["peak_rss_mb"], t["peak_pss_mb"]),
                _pair(t["streams_peak_rss_mb"], t["streams_peak_pss_mb"]),
                str(t["errors"]),
                fmt(t["server_errors"], 0),
            ]
            for name, t in per.items()
        ],
    )
    lines += [
        "For `direct`, CPU and memory are the upstream's. Memory is summed over the target's "
        "process group (granian's parent and its worker, nginx's master and worker) and sampled "
        "every 0.1 s. RSS counts a page shared between a parent and its forked worker in both "
        "(as `ps` does; the issue's figure, and the conservative one); PSS splits it between "
        "them (what the group really adds to the machine).",
        "",
        "## Ratios to each baseline (same run)",
        "",
        "req/s of the row ÷ req/s of the baseline, and CPU per request of the baseline ÷ the "
        "row's (above 1: the row is cheaper); the geometric mean over rounds of each round's "
        "ratio. On a busy machine trust the CPU ratio.",
        "",
    ]
    rows = []
    for name, by_base in summ["ratios"].items():
        for base_name, r in by_base.items():
            rows.append(
                [name, base_name]
                + [fmt(r[k], 2) for k in ("json_rps", "json_cpu", "stream_rps", "stream_cpu")]
            )
    lines += _table(
        [
            "target",
            "baseline",
            "json req/s ratio",
            "json CPU ratio",
            "stream req/s ratio",
            "stream CPU ratio",
        ],
        "llrrrr",
        rows,
    )
    if summ.get("plugin_cost"):
        lines += [
            "## What the plugins cost (same run)",
            "",
            "Each router beside the same router without those plugins: req/s ratio, CPU ratio "
            "(above 1: cheaper) and the CPU µs the plugins add per request, from "
            f"{params.get('pair_rounds', '?')} rounds of {params.get('pair_round', '?')} s each "
            "in which the two ran back to back (A B, B A, …): the geometric mean of the rounds' "
            "ratios, the mean of their differences. `router-money` is "
            "accounts + credits, `router-ratelimit` is the bare router plus the rate limiter "
            "(limits set, never binding), `router-full` is all three.",
            "",
        ]
        rows = []
        for name, by_base in summ["plugin_cost"].items():
            for base_name, r in by_base.items():
                rows.append(
                    [name, base_name]
                    + [fmt(r[f"json_{k}"], 2) for k in ("rps", "cpu")]
                    + [fmt(r["json_cpu_us_added"], 0)]
                    + [fmt(r[f"stream_{k}"], 2) for k in ("rps", "cpu")]
                    + [fmt(r["stream_cpu_us_added"], 0)]
                )
        lines += _table(
            [
                "target",
                "without its plugins",
                "json req/s ratio",
                "json CPU ratio",
                "json CPU µs added",
                "stream req/s ratio",
                "stream CPU ratio",
                "stream CPU µs added",
            ],
            "llrrrrrr",
            rows,
        )
    lines += ["## Added latency over direct (ms, same run)", ""]
    rows = []
    for scenario, by_target in summ["added_latency_ms"].items():
        where = (
            f"{scenario[5:]} req/s open loop (k6)"
            if scenario.startswith("open-")
            else f"{scenario.split('-')[0]}, one connection (wrk)"
        )
        for name, a in by_target.items():
            rows.append([where, name] + [fmt(a[k], 3) for k in PCTS])
    lines += _table(["load", "target", "p50", "p90", "p99", "p99.9"], "llrrrr", rows)
    if summ["ttft_overhead_ms"]:
        lines += [
            "## Streams: time to first token",
            "",
            "`benchmarks.ttft`: one connection, one stream after another; TTFB is the response "
            "head, TTFT the first event with content. Added over direct, ms:",
            "",
        ]
        lines += _table(
            ["target", "TTFB p50", "TTFT p50", "TTFT p90", "TTFT p99"],
            "lrrrr",
            [
                [name] + [fmt(t[k], 3) for k in ("ttfb_p50", "ttft_p50", "ttft_p90", "ttft_p99")]
                for name, t in summ["ttft_overhead_ms"].items()
            ],
        )
    many = [m for m in runs if m.scenario == f"streams-c{streams}"]
    if many:
        lines += [
            f"## {streams} concurrent slow streams",
            "",
            f"wrk with {streams} connections, each posting a stream of {params['slow_chunks']} "
            f"chunks {params['slow_chunk_delay'] * 1000:g} ms apart (model `bench-slow`), for "
            f"{params['streams_duration']:g} s. *Open streams* is Little's law (streams/s "
            "times mean duration): how many were really in flight.",
            "",
        ]
        lines += _table(
            [
                "target",
                "streams/s",
                "open streams",
                "p50 ms",
                "p99 ms",
                "peak RSS MB",
                "peak PSS MB",
                "CPU µs/stream",
                "errors",
            ],
            "lrrrrrrrl",
            [
                [
                    m.target,
                    fmt(m.rps, 0),
                    fmt(per[m.target]["streams_concurrency"], 0),
                    fmt(m.p50_ms, 1),
                    fmt(m.p99_ms, 1),
                    fmt(m.peak_rss_mb, 0),
                    fmt(m.peak_pss_mb, 0),
                    fmt(m.cpu_us_per_req, 0),
                    _errors(m),
                ]
                for m in many
            ],
        )
    sweep = [m for m in runs if m.scenario == "sweep"]
    if sweep:
        lines += [
            "## Latency against offered load (open loop)",
            "",
            f"![latency percentiles against offered load]({meta['plot']})",
            "",
            "k6 `constant-arrival-rate`: requests arrive on schedule whether or not earlier ones "
            "finished, so a stall shows in the tail instead of slowing the arrivals. A target "
            "leaves the sweep at its first step with errors or dropped arrivals (*saturated*), "
            "or when CPU 1 (upstream + load generator) ran at ≥ 90 % or `direct` itself failed "
            "at that rate (*CPU 1 bound*: the target's own limit was not reached, and the sweep "
            "ends there).",
            "",
        ]
        lines += _table(
            [
                "rate",
                "target",
                "req/s",
                "p50",
                "p90",
                "p99",
                "p99.9",
                "errors",
                "CPU µs/req",
                "upstream+loadgen CPU %",
                "state",
            ],
            "rlrrrrrlrrl",
            [
                [
                    fmt(m.rate, 0),
                    m.target,
                    fmt(m.rps, 0),
                    fmt(m.p50_ms, 3),
                    fmt(m.p90_ms, 3),
                    fmt(m.p99_ms, 3),
                    fmt(m.p999_ms, 3),
                    _errors(m),
                    fmt(m.cpu_us_per_req, 0),
                    fmt((m.upstream_cpu_pct or 0) + (m.loadgen_cpu_pct or 0), 0),
                    ("CPU 1 bound" if m.loadgen_bound else "saturated" if m.saturated else "ok")
                    + (" (retried once)" if "retried" in m.note else ""),
                ]
                for m in sorted(sweep, key=lambda m: (m.rate or 0, m.target))
            ],
        )
    lines += [
        "## Every closed-loop run",
        "",
        f"wrk; each {c}-connection run is the best of {params['rounds']} rounds, the targets "
        "taking turns in counterbalanced order (A B, B A, …) "
        "(errors summed over all rounds). *target wait %*: time runnable but waiting for a CPU.",
        "",
    ]
    lines += _table(
        [
            "scenario",
            "target",
            "req/s",
            "p50 ms",
            "p90 ms",
            "p99 ms",
            "p99.9 ms",
            "TTFT p50",
            "errors",
            "CPU µs/req",
            "target CPU %",
            "target wait %",
            "upstream CPU %",
            "loadgen CPU %",
            "peak RSS MB",
        ],
        "llrrrrrrlrrrrrr",
        [
            [
                m.scenario,
                m.target,
                fmt(m.rps, 0),
                fmt(m.p50_ms, 3),
                fmt(m.p90_ms, 3),
                fmt(m.p99_ms, 3),
                fmt(m.p999_ms, 3),
                fmt(m.ttft_p50_ms, 3),
                _errors(m),
                fmt(m.cpu_us_per_req, 0),
                fmt(m.target_cpu_pct, 0),
                fmt(m.target_wait_pct, 0),
                fmt(m.upstream_cpu_pct, 0),
                fmt(m.loadgen_cpu_pct, 0),
                fmt(m.peak_rss_mb, 0),
            ]
            for m in runs
            if m.scenario != "sweep"
        ],
    )
    for name, spent in result.get("extras", {}).get("credits_spent_usd", {}).items():
        if spent is not None:
            lines.append(
                f"{name}'s user spent ${spent} of credits in the run (read back with "
                "`lmrouter credits show --json`): credits were metered on every request.\n"
            )
    for name, spans in result.get("extras", {}).get("otel_spans", {}).items():
        lines.append(
            f"{name} exported {spans if spans is not None else 'an unknown number of'} spans "
            "over OTLP/HTTP to the local collector in the run (counted by the collector).\n"
        )
    for note in result.get("notes", []):
        lines.append(f"Note: {note}\n")
    return "\n".join(lines).rstrip() + "\n"
