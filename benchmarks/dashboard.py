"""``python -m benchmarks.dashboard``: how long each dashboard page takes with a heavy user.

Seeds one user with ``--rows`` usage records (default 10,000, all within the last 30 days, so
the default usage page sums every one of them), five models, three keys and twenty credit lots
into a real SQLite file; starts the real router (granian, one worker); signs in through the
sign-in form; then fetches each page ``--n`` times after a warm-up, one request at a time over
one keep-alive connection, and prints p50 / p99 / max milliseconds per page, measured by the
client (so loopback HTTP is included). Writes ``benchmarks/results/dashboard.md``.
"""

from __future__ import annotations

import argparse
import asyncio
import random
import sqlite3
import statistics
import tempfile
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

from lmrouter import stores
from lmrouter.gateway import load
from lmrouter.testing import config as kit
from lmrouter.testing.server import RouterServer
from lmrouter_accounts import service as accounts
from lmrouter_credits import clock
from lmrouter_credits import service as credits
from lmrouter_dashboard.testing import DashboardClient

RESULTS = Path(__file__).resolve().parent / "results"
EMAIL = "heavy@example.com"
PASSWORD = "a long benchmark password"
OPERATOR = "sk-bench-operator"
MODELS = ["openai/gpt-4o-mini", "openai/gpt-4o", "anthropic/claude", "google/gemini", "groq/llama"]
CONFIG = kit.config(
    admin=OPERATOR,
    server={"log_requests": False},
    storage={"url": "sqlite:///bench.db"},
    providers={"up": kit.provider("openai", "http://127.0.0.1:9/v1", "unused")},
    models={m: kit.route("up", m, price={"input": 1, "output": 2}) for m in MODELS},
)


async def seed(config_path: Path, rows: int) -> tuple[list[str], str]:
    """The user, their keys, lots and ``rows`` usage records; returns (key ids, user id)."""
    config, pm = load(config_path)
    async with stores.opened(config, pm) as store:
        user = await accounts.create_user(store, EMAIL, password=PASSWORD)
        keys = [
            (await accounts.create_key(store, user.id, name=f"key {i}")).key.id for i in range(3)
        ]
        for i in range(20):
            await credits.grant(
                store, user.id, 10**12 * (i + 1), purchased_at=datetime.now(UTC) - timedelta(i)
            )
    now = clock.now_us()
    rng = random.Random(7)
    records = []
    for i in range(rows):
        at = now - rng.randrange(30 * clock.DAY_US - 3_600_000_000)  # within the last 30 days
        prompt, completion = rng.randrange(10, 4000), rng.randrange(1, 800)
        cost = prompt * 10**6 + completion * 2 * 10**6
        records.append(
            (
                f"bench-{i}",
                f"req-{i}",
                user.id,
                rng.choice(keys),
                f"user:{user.id}",
                rng.choice(MODELS),
                prompt,
                completion,
                cost,
                cost,
                clock.to_iso(at),
            )
        )
    with sqlite3.connect(config_path.parent / "bench.db") as db:
        db.executemany(
            "INSERT INTO usage (id, request_id, user_id, key_id, principal, model, dialect, "
            "attempts, status, http_status, prompt_tokens, completion_tokens, cost_pico, "
            "charged_pico, billable, total_ms, created_at) VALUES (?, ?, ?, ?, ?, ?, "
            "'openai.chat', 1, 'ok', 200, ?, ?, ?, ?, 1, 12.5, ?)",
            records,
        )
    return keys, user.id


def measure(client: DashboardClient, path: str, n: int) -> list[float]:
    for _ in range(3):  # warm-up: templates compiled, pages cached by SQLite
        assert client.get(path).status_code == 200, path
    times = []
    for _ in range(n):
        start = time.perf_counter()
        answer = client.get(path)
        times.append((time.perf_counter() - start) * 1000)
        assert answer.status_code == 200, path
    return times


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.dashboard", description=__doc__)
    parser.add_argument("--rows", type=int, default=10_000, help="usage records of the user")
    parser.add_argument("--n", type=int, default=100, help="requests per page")
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory(prefix="lmrouter-dashboard-bench-") as tmp:
        workdir = Path(tmp)
        (workdir / "lmrouter.toml").write_text(CONFIG)
        keys, _ = asyncio.run(seed(workdir / "lmrouter.toml", args.rows))
        wide = (datetime.now(UTC).date() - timedelta(days=365)).isoformat()
        pages = {
            "sign-in form": ("/dashboard/login", False),
            "overview": ("/dashboard", True),
            "API keys": ("/dashboard/keys", True),
            "credits (20 lots)": ("/dashboard/credits", True),
            f"usage, 30 days ({args.rows:,} rows)": ("/dashboard/usage", True),
            "usage, one model": (f"/dashboard/usage?model={MODELS[1]}", True),
            "usage, one key": (f"/dashboard/usage?key={keys[0]}", True),
            "usage, 366 days": (f"/dashboard/usage?start={wide}", True),
            "usage, older page": (None, True),
            "provider keys": ("/dashboard/byok", True),
            "account": ("/dashboard/account", True),
            "admin: users": ("/dashboard/admin", False),
        }
        lines = [
            f"Dashboard pages, one user with {args.rows:,} usage records; {args.n} sequential "
            "requests per page after 3 warm-up ones; milliseconds measured by the client "
            f"(loopback HTTP included). {datetime.now(UTC):%Y-%m-%d}.",
            "",
            "| page | p50 ms | p99 ms | max ms | bytes |",
            "|---|---:|---:|---:|---:|",
        ]
        with RouterServer(CONFIG, workdir=workdir) as server:
            user = DashboardClient(server.url)
            assert user.login(EMAIL, PASSWORD).status_code == 303
            operator = DashboardClient(server.url)
            assert operator.post("/dashboard/operator", {"key": OPERATOR}).status_code == 303
            first = user.get("/dashboard/usage").text
            older = first.split('href="/dashboard/usage?start=')[-1].split('"')[0]
            for name, (path, signed_in) in pages.items():
                path = path or "/dashboard/usage?start=" + older.replace("&amp;", "&")
                client = user if signed_in else operator
                if name == "sign-in form":
                    client = DashboardClient(server.url)
                times = sorted(measure(client, path, args.n))
                p99 = times[min(len(times) - 1, round(len(times) * 0.99) - 1)]
                size = len(client.get(path).content)
                lines.append(
                    f"| {name} | {statistics.median(times):.1f} | {p99:.1f} | {times[-1]:.1f} "
                    f"| {size:,} |"
                )
    text = "\n".join(lines) + "\n"
    print(text)
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / "dashboard.md").write_text(text)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
