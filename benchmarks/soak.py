"""``python -m benchmarks.soak``: does memory stay flat under traffic that ends badly?

Each row runs one server for ``--duration`` seconds under ``--clients`` connections that loop
over one kind of request, sampling the RSS of the server's process group (supervisor and
worker) every ``--every`` seconds. The upstream streams 20 chunks 20 ms apart, so a client
that reads only the first event leaves while the server still has an upstream open.

Rows (the first four are issue #13's table; the last is the full router under a mix):

- ``router-bare abandoned``: pass-through, clients read the first event and close.
- ``router-bare complete``: the same streams read to the end.
- ``aiohttp-proxy abandoned``: the bare aiohttp proxy under granian, abandoned streams.
- ``granian-asgi abandoned``: a trivial slow-streaming ASGI app (no upstream), abandoned.
- ``router-full mixed``: accounts + credits + ratelimit, a third each of complete streams,
  abandoned streams and non-streaming requests.

The slope is a least-squares fit of RSS over time after the warm-up (the first ``--warmup``
fraction of the run), in MB per minute: a leak shows as a slope that stays positive however
long the run; a flat server's slope is within a fraction of a MB per minute of zero.
Results: ``benchmarks/results/soak.{json,md}``.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import shutil
import sys
import tempfile
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

from benchmarks import targets
from benchmarks.procs import Proc, free_port, group_memory, group_pids, wait_ready
from benchmarks.scenarios import JSON_BODY, post

RESULTS = Path(__file__).resolve().parent / "results"
STREAM = b'{"model":"bench-slow","messages":[{"role":"user","content":"hi"}],"stream":true}'
JSON = JSON_BODY
ROWS = ("router-bare/abandon", "router-bare/complete", "aiohttp-proxy/abandon",
        "granian-asgi/abandon", "router-full/mixed")  # fmt: skip
MIXES = {
    "abandon": ("abandon",),
    "complete": ("complete",),
    "mixed": ("complete", "abandon", "json"),
}


@dataclass
class Row:
    target: str
    mode: str
    requests: int = 0
    errors: int = 0
    samples: list[tuple[float, float]] = field(default_factory=list)  # (seconds, RSS MB)

    def slope_after(self, warmup: float) -> float:
        """MB per minute, fitted to the samples after the first ``warmup`` fraction."""
        return slope(self.samples[int(len(self.samples) * warmup) :])


def slope(samples: list[tuple[float, float]]) -> float:
    """Least-squares MB per minute over the samples given."""
    if len(samples) < 2:
        return 0.0
    n = len(samples)
    mt = sum(t for t, _ in samples) / n
    mm = sum(m for _, m in samples) / n
    var = sum((t - mt) ** 2 for t, _ in samples)
    if not var:
        return 0.0
    return 60 * sum((t - mt) * (m - mm) for t, m in samples) / var


# -- load -------------------------------------------------------------------------------------


def request(port: int, body: bytes, key: str) -> bytes:
    head = (
        f"POST /v1/chat/completions HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\n"
        f"Authorization: Bearer {key}\r\nContent-Type: application/json\r\n"
        f"Content-Length: {len(body)}\r\n\r\n"
    )
    return head.encode() + body


async def one(port: int, kind: str, key: str) -> bool:
    """One request on a fresh connection; True when it went as the kind intends."""
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    try:
        writer.write(request(port, JSON if kind == "json" else STREAM, key))
        await writer.drain()
        seen = b""
        while True:
            data = await reader.read(65536)
            if not data:
                return (kind == "complete" and b"[DONE]" in seen) or kind == "json"
            seen += data
            if not seen.startswith(b"HTTP/1.1 200"):
                return False
            if kind == "abandon" and b"data:" in seen:
                return True  # close with the stream still running
            if kind == "complete" and b"[DONE]" in seen:
                return True
            if kind == "json" and b'"usage"' in seen:
                return True
    finally:
        writer.close()


async def drive(
    row: Row, port: int, key: str, pgids: list[int], seconds: float, clients: int, every: float
) -> None:
    kinds = MIXES[row.mode]
    stop = time.monotonic() + seconds
    start = time.monotonic()

    async def client(n: int) -> None:
        i = n
        while time.monotonic() < stop:
            kind = kinds[i % len(kinds)]
            i += 1
            try:
                ok = await asyncio.wait_for(one(port, kind, key), 30)
            except (OSError, TimeoutError):
                ok = False
            row.requests += 1
            row.errors += not ok

    async def sample() -> None:
        while time.monotonic() < stop:
            rss, _ = group_memory(group_pids(pgids))
            row.samples.append((round(time.monotonic() - start, 1), round(rss / 2**20, 1)))
            print(
                f"  {row.target} {row.mode}: t={row.samples[-1][0]:5.0f}s "
                f"rss={row.samples[-1][1]:6.1f} MB  requests={row.requests}",
                file=sys.stderr,
            )
            await asyncio.sleep(every)

    await asyncio.gather(sample(), *(client(n) for n in range(clients)))


# -- targets ----------------------------------------------------------------------------------


def start(name: str, workdir: Path, upstream: targets.Target) -> targets.Target:
    if name == "aiohttp-proxy":
        return targets.start_aiohttp_proxy(workdir, None, upstream.port)
    if name == "granian-asgi":
        port = free_port()
        proc = Proc(
            name,
            [targets.PYTHON, "-m", "benchmarks.slow_asgi", "--port", str(port)],
            workdir / f"{name}.log",
            cwd=targets.ROOT,
            env={"PYTHONPATH": str(targets.ROOT)},
        )
        return targets.Target(name, port, [proc])
    return targets.start_router(workdir, None, upstream.port, name.removeprefix("router-"))


def report(rows: list[Row], warmup: float) -> str:
    lines = [
        "| server | traffic | requests | failed | RSS start → end (MB) | slope after warm-up |",
        "|---|---|--:|--:|---|--:|",
    ]
    for row in rows:
        rss = [m for _, m in row.samples]
        trail = " → ".join(f"{m:.0f}" for m in rss[:: max(1, len(rss) // 6)])
        lines.append(
            f"| {row.target} | {row.mode} | {row.requests:,} | {row.errors:,} | {trail} | "
            f"{row.slope_after(warmup):+.2f} MB/min |"
        )
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m benchmarks.soak", description=__doc__)
    p.add_argument("--rows", default=",".join(ROWS), help=f"from {','.join(ROWS)}")
    p.add_argument("--duration", type=float, default=120.0, help="seconds per row (120)")
    p.add_argument("--full-duration", type=float, default=300.0, help="router-full row (300)")
    p.add_argument("--clients", type=int, default=48, help="connections (48)")
    p.add_argument("--every", type=float, default=5.0, help="seconds between samples (5)")
    p.add_argument("--warmup", type=float, default=0.25, help="fraction left out of the fit")
    p.add_argument("--quick", action="store_true", help="20 s a row: a smoke test")
    args = p.parse_args(argv)
    if args.quick:
        args.duration = args.full_duration = 20.0
        args.every = 2.0
    wanted = [r.strip() for r in args.rows.split(",") if r.strip()]
    if set(wanted) - set(ROWS):
        p.error(f"unknown rows: {sorted(set(wanted) - set(ROWS))}")
    workdir = Path(tempfile.mkdtemp(prefix="lmrouter-soak-"))
    rows: list[Row] = []
    upstream = targets.start_upstream(
        workdir,
        None,
        workers=1,
        chunks=20,
        pacing=["--slow-chunks", "20", "--slow-chunk-delay", "0.02"],
    )
    try:
        wait_ready(upstream.procs[0], post(upstream.url, JSON, "sk-upstream"))
        for spec in wanted:
            name, mode = spec.split("/")
            target = start(name, workdir, upstream)
            try:
                wait_ready(target.procs[0], post(target.url, JSON, target.key), timeout=90)
                row = Row(name, mode)
                seconds = args.full_duration if name == "router-full" else args.duration
                pgids = [proc.popen.pid for proc in target.procs]
                asyncio.run(drive(row, target.port, target.key, pgids, seconds, args.clients,
                                  args.every))  # fmt: skip
                rows.append(row)
            finally:
                for proc in target.procs:
                    proc.stop()
    finally:
        for proc in upstream.procs:
            proc.stop()
        shutil.rmtree(workdir, ignore_errors=True)
    table = report(rows, args.warmup)
    name = "soak-quick" if args.quick else "soak"
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / f"{name}.json").write_text(
        json.dumps(
            [{**asdict(r), "slope_mb_per_min": r.slope_after(args.warmup)} for r in rows], indent=1
        )
    )
    (RESULTS / f"{name}.md").write_text(table + "\n")
    print(table)
    return 0


if __name__ == "__main__":
    sys.exit(main())
