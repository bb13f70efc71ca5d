"""The machine, the derived figures (added latency, throughput ratio) and the Markdown report."""

from __future__ import annotations

import datetime
import os
import platform
import subprocess
import sys
from importlib import metadata
from pathlib import Path
from typing import Any

from benchmarks.loadgen import Measurement

TARGET_RATIO = 0.60  # router req/s ÷ aiohttp-proxy req/s, same run
TARGET_ADDED_P50_MS = 1.0  # router p50 minus direct p50 at one connection
ADDED_KEYS = ("p50", "p90", "p99", "ttfb_p50", "ttfb_p99")
PACKAGES = ("granian", "aiohttp", "orjson", "uvloop", "starlette", "msgspec", "pluggy", "lmrouter")


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


# -- derived figures --------------------------------------------------------------------------


def _find(runs: list[Measurement], target: str, scenario: str) -> Measurement | None:
    for m in runs:
        if m.target == target and m.scenario == scenario and m.requests:
            return m
    return None


def _diff(a: float | None, b: float | None) -> float | None:
    return None if a is None or b is None else round(a - b, 3)


def summarize(runs: list[Measurement], connections: int) -> dict[str, Any]:
    """Added latency of each proxy over ``direct`` and throughput relative to aiohttp-proxy."""
    out: dict[str, Any] = {
        "added_latency_ms": {},
        "throughput_ratio": {},
        "cpu_ratio": {},  # aiohttp-proxy CPU per request / this target's: contention-proof
        "targets": {
            "router_over_aiohttp_proxy_min": TARGET_RATIO,
            "added_p50_ms_max": TARGET_ADDED_P50_MS,
        },
    }
    proxies = sorted({m.target for m in runs} - {"direct"})
    for kind in ("json", "stream"):
        direct = _find(runs, "direct", f"{kind}-c1")
        ttfb_direct = _find(runs, "direct", "stream-ttfb")
        base = _find(runs, "aiohttp-proxy", f"{kind}-c{connections}")
        for name in proxies:
            one = _find(runs, name, f"{kind}-c1")
            if direct and one:
                entry = {
                    "p50": _diff(one.p50_ms, direct.p50_ms),
                    "p90": _diff(one.p90_ms, direct.p90_ms),
                    "p99": _diff(one.p99_ms, direct.p99_ms),
                }
                if kind == "stream":
                    ttfb = _find(runs, name, "stream-ttfb")
                    if ttfb and ttfb_direct:
                        entry["ttfb_p50"] = _diff(ttfb.ttfb_p50_ms, ttfb_direct.ttfb_p50_ms)
                        entry["ttfb_p99"] = _diff(ttfb.ttfb_p99_ms, ttfb_direct.ttfb_p99_ms)
                out["added_latency_ms"].setdefault(kind, {})[name] = entry
            loaded = _find(runs, name, f"{kind}-c{connections}")
            if base and loaded and base.rps:
                out["throughput_ratio"].setdefault(kind, {})[name] = round(loaded.rps / base.rps, 3)
            if base and loaded and base.cpu_us_per_req and loaded.cpu_us_per_req:
                out["cpu_ratio"].setdefault(kind, {})[name] = round(
                    base.cpu_us_per_req / loaded.cpu_us_per_req, 3
                )
    ratio = out["throughput_ratio"].get("json", {}).get("router")
    added = out["added_latency_ms"].get("json", {}).get("router", {}).get("p50")
    out["router_pass"] = {
        "throughput": None if ratio is None else ratio >= TARGET_RATIO,
        "added_p50": None if added is None else added < TARGET_ADDED_P50_MS,
    }
    return out


# -- Markdown ---------------------------------------------------------------------------------


def fmt(value: float | None, digits: int = 2) -> str:
    return "-" if value is None else f"{value:,.{digits}f}"


def _verdict(ok: bool | None) -> str:
    return {True: "**pass**", False: "**MISS**", None: "not measured"}[ok]


def _errors(m: Measurement) -> str:
    if not m.error_total:
        return "0"
    return ", ".join(f"{k} {v}" for k, v in m.errors.items() if v)


def markdown(result: dict[str, Any]) -> str:
    meta = result["meta"]
    params = result["params"]
    summ = result["summary"]
    runs = [
        Measurement(**{k: v for k, v in r.items() if k != "error_total"}) for r in result["runs"]
    ]
    c = params["connections"]
    ratio = summ["throughput_ratio"].get("json", {}).get("router")
    added = summ["added_latency_ms"].get("json", {}).get("router", {})
    lines = [
        "# LMRouter overhead benchmark",
        "",
        f"Router, non-streaming, one worker: **adds {fmt(added.get('p50'), 3)} ms p50 / "
        f"{fmt(added.get('p99'), 3)} ms p99** over direct at one connection "
        f"(target < {TARGET_ADDED_P50_MS:g} ms p50: {_verdict(summ['router_pass']['added_p50'])})"
        f"; **{fmt(None if ratio is None else ratio * 100, 0)} % of the aiohttp-proxy throughput** "
        f"at {c} connections (target ≥ {TARGET_RATIO * 100:.0f} %: "
        f"{_verdict(summ['router_pass']['throughput'])}).",
        "",
        f"- date: {meta['date']}; git: {meta['machine']['git']}",
        f"- command: `{meta['command']}`",
        f"- machine: {meta['machine']['cpu']}, {meta['machine']['cores']} cores, "
        f"Linux {meta['machine']['kernel']}; load average at start {meta['loadavg_start']}, "
        f"at end {meta['loadavg_end']}",
        f"- Python {meta['machine']['python']}; "
        + ", ".join(f"{k} {v}" for k, v in meta["machine"]["packages"].items() if v),
        "- load generators: " + "; ".join(f"{k}: {v}" for k, v in meta["tools"].items() if v),
        f"- CPU placement: {meta['placement']['text']}",
        f"- upstream: {meta['upstream']}",
        "",
        "Latency is per request as the load generator sees it; req/s counts 2xx answers only; "
        f"each {c}-connection run is the best of {params.get('rounds', 1)} alternating rounds "
        "(errors summed over all rounds). "
        "A shared, busy machine makes these figures indicative: compare targets within one run, "
        "not across runs.",
        "",
        "| scenario | target | tool | conns | req/s | p50 ms | p90 ms | p99 ms | TTFB p50 | "
        "TTFB p99 | errors | CPU µs/req | target CPU % | target wait % | upstream CPU % | "
        "loadgen CPU % |",
        "|---|---|---|--:|--:|--:|--:|--:|--:|--:|---|--:|--:|--:|--:|--:|",
    ]
    for m in runs:
        conns = f"{m.rate:g}/s open" if m.rate else str(m.connections)
        lines.append(
            f"| {m.scenario} | {m.target} | {m.tool} | {conns} | {fmt(m.rps, 0)} | "
            f"{fmt(m.p50_ms, 3)} | {fmt(m.p90_ms, 3)} | {fmt(m.p99_ms, 3)} | "
            f"{fmt(m.ttfb_p50_ms, 3)} | {fmt(m.ttfb_p99_ms, 3)} | {_errors(m)} | "
            f"{fmt(m.cpu_us_per_req, 0)} | {fmt(m.target_cpu_pct, 0)} | "
            f"{fmt(m.target_wait_pct, 0)} | {fmt(m.upstream_cpu_pct, 0)} | "
            f"{fmt(m.loadgen_cpu_pct, 0)} |"
        )
    lines += [
        "",
        "Added latency over direct (ms, one connection) and throughput relative to "
        f"aiohttp-proxy ({c} connections), same run:",
        "",
        "| payload | target | added p50 | added p90 | added p99 | added TTFB p50 | "
        "added TTFB p99 | req/s ÷ aiohttp-proxy | CPU/req of aiohttp-proxy ÷ this |",
        "|---|---|--:|--:|--:|--:|--:|--:|--:|",
    ]
    for kind in ("json", "stream"):
        added_kind = summ["added_latency_ms"].get(kind, {})
        ratios = summ["throughput_ratio"].get(kind, {})
        cpu = summ["cpu_ratio"].get(kind, {})
        for name in sorted(set(added_kind) | set(ratios)):
            a = added_kind.get(name, {})
            lines.append(
                f"| {kind} | {name} | "
                + " | ".join(fmt(a.get(k), 3) for k in ADDED_KEYS)
                + f" | {fmt(ratios.get(name), 2)} | {fmt(cpu.get(name), 2)} |"
            )
    for note in result.get("notes", []):
        lines.append(f"\nNote: {note}")
    return "\n".join(lines) + "\n"
