"""Credits end to end: the real router (granian) with the accounts and credits plugins, a fake
OpenAI upstream with known usage, the official openai SDK as the client, and the `lmrouter`
commands run beside the server on the same database: a SQLite file (holds in the router's
memory), and again PostgreSQL (holds in the database).

Prices here are USD per 1M tokens: input 1, output 2, i.e. 1e6 and 2e6 pico-USD a token."""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any

import anthropic
import httpx
import openai
import pytest

from lmrouter.testing import config as kit
from lmrouter.testing import operator
from lmrouter.testing.fake_openai import Behavior, FakeOpenAI
from lmrouter.testing.operator import query
from lmrouter.testing.pytest_plugin import parametrize_stores
from lmrouter.testing.server import RouterServer
from lmrouter_credits.testing import ledger_matches_lots

ADMIN = "sk-admin-credits-e2e"
HELLO = [{"role": "user", "content": "Hello!"}]
PICO = 10**12
# what the fake reports for model "priced": 1000 in, 50 out → 1000e6 + 100e6 pico-USD
PRICED_USAGE = {"prompt_tokens": 1000, "completion_tokens": 50}
PRICED_COST = 1_100_000_000


def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    parametrize_stores(metafunc, scope="module")  # one router per store


def config(
    upstream: str, store: str = "sqlite:///credits.db", disabled: tuple[str, ...] = ("ratelimit",)
) -> str:
    return kit.config(
        admin=ADMIN,
        disabled=disabled,
        storage={"url": store},
        credits={"flush_interval": 0.02},
        providers={"up": kit.provider("openai", upstream, "sk-upstream")},
        models={
            "priced": kit.model(
                kit.route("up", "priced-x", price={"input": 1, "output": 2}), max_output_tokens=100
            ),
            "streamy": kit.route("up", "streamy-x", price={"input": 0, "output": 2}),
            "chatty": kit.route("up", "chatty-x", price={"input": 1, "output": 2}),
        },
    )


class Cli:
    """The `lmrouter` command on the server's config, in this (another) process."""

    def __init__(self, config_path: Path) -> None:
        self.config_path = config_path

    def __call__(self, *args: str) -> str:
        return operator.cli(self.config_path, *args)

    def user_with_key(self, email: str) -> str:
        return operator.user_with_key(self.config_path, email)

    def show(self, email: str) -> dict[str, Any]:
        return json.loads(self("credits", "show", email, "--json"))


@pytest.fixture(scope="module")
def fake() -> Iterator[FakeOpenAI]:
    fake = FakeOpenAI()
    fake.script("priced-x", Behavior(usage=PRICED_USAGE))
    # 20 deltas 30 ms apart: streams stay open long enough to overlap (and to be seen holding)
    fake.script(
        "streamy-x",
        Behavior(text="x" * 40, chunk_chars=2, chunk_delay=0.03, usage={"completion_tokens": 50}),
    )
    # long, with no usage until the very end: a client that leaves early never sees it
    fake.script("chatty-x", Behavior(text="word " * 400, chunk_chars=5, chunk_delay=0.005))
    with fake.run_in_thread():
        yield fake


@pytest.fixture(scope="module")
def workdir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("credits-e2e")


@pytest.fixture(scope="module")
def store_url(module_postgres_url: str | None) -> str:
    return module_postgres_url or "sqlite:///credits.db"


@pytest.fixture(scope="module")
def router(workdir: Path, fake: FakeOpenAI, store_url: str) -> Iterator[RouterServer]:
    with RouterServer(config(fake.base_url, store_url), workdir=workdir) as server:
        yield server


@pytest.fixture(scope="module")
def cli(router: RouterServer) -> Cli:
    return Cli(router.config_path)


@pytest.fixture(scope="module")
def db(router: RouterServer, store_url: str) -> Path | str:
    """What operator.query reads: the SQLite file, or the PostgreSQL database's URL."""
    return router.workdir / "credits.db" if store_url.startswith("sqlite") else store_url


def get(router: RouterServer, path: str, key: str | None, **params: Any) -> httpx.Response:
    headers = {"authorization": f"Bearer {key}"} if key else {}
    return httpx.get(f"{router.url}{path}", headers=headers, params=params, timeout=10)


def pico(usd: str) -> int:
    return int(Decimal(usd) * PICO)


def gauge(exposition: str) -> float:
    [value] = [
        float(line.split()[-1])
        for line in exposition.splitlines()
        if line.startswith("lmrouter_credit_holds_outstanding ")
    ]
    return value


def within(seconds: float, attempt: Callable[[], bool]) -> None:
    deadline = time.monotonic() + seconds
    while not attempt():
        assert time.monotonic() < deadline, f"not within {seconds}s"
        time.sleep(0.05)


def test_a_request_costs_exactly_its_price_and_only_its_owner_sees_it(
    router: RouterServer, cli: Cli, db: Path | str, fake: FakeOpenAI
) -> None:
    alice = cli.user_with_key("alice@example.com")
    bob = cli.user_with_key("bob@example.com")
    cli("credits", "grant", "alice@example.com", "1")

    client = openai.OpenAI(base_url=router.openai_url, api_key=alice, max_retries=0)
    raw = client.chat.completions.with_raw_response.create(model="priced", messages=HELLO)
    reply = raw.parse()
    request_id = raw.headers["x-request-id"]
    assert (reply.usage.prompt_tokens, reply.usage.completion_tokens) == (1000, 50)
    assert Decimal(str(reply.usage.cost)) == Decimal("0.0011")

    credits = get(router, "/v1/credits", alice).json()
    assert credits["balance_usd"] == "0.9989"  # 1 - 0.0011, exactly
    [lot] = credits["lots"]
    assert (lot["source"], lot["amount_usd"], lot["remaining_usd"]) == ("grant", "1", "0.9989")
    assert cli.show("alice@example.com")["balance_usd"] == "0.9989"

    usage = get(router, "/v1/usage", alice).json()
    [row] = usage["data"]
    assert usage["has_more"] is False and usage["next_cursor"] is None
    assert row["request_id"] == request_id
    assert (row["model"], row["provider"], row["route_model"]) == ("priced", "up", "priced-x")
    assert (row["status"], row["http_status"], row["attempts"]) == ("ok", 200, 1)
    assert (row["prompt_tokens"], row["completion_tokens"]) == (1000, 50)
    assert row["cost_usd"] == row["charged_usd"] == "0.0011"
    assert row["written_off_usd"] == "0" and row["billable"] is True
    assert row["estimated"] is False
    [(user_id, key_id, charged)] = query(
        db, "SELECT user_id, key_id, charged_pico FROM usage WHERE request_id = ?", (request_id,)
    )
    assert charged == PRICED_COST and row["user_id"] == user_id and row["key_id"] == key_id
    spends = query(db, "SELECT amount_pico FROM ledger WHERE request_id = ?", (request_id,))
    assert spends == [(-PRICED_COST,)]
    ledger_matches_lots(db)

    # nobody else sees it: not bob, not bob asking for alice's, not anyone without a key
    assert get(router, "/v1/usage", bob).json()["data"] == []
    assert get(router, "/v1/credits", bob).json() == {"balance_usd": "0", "lots": []}
    forbidden = get(router, "/v1/usage", bob, user="alice@example.com")
    assert forbidden.status_code == 403
    assert get(router, "/v1/credits", bob, user="alice@example.com").status_code == 403
    for path in ("/v1/usage", "/v1/credits"):
        missing = get(router, path, None)
        assert missing.status_code == 401
        assert missing.json()["error"]["code"] == "invalid_api_key"
        assert get(router, path, "sk-lmr-" + "x" * 32).status_code == 401
    # the operator may look, naming the user
    as_admin = get(router, "/v1/usage", ADMIN, user="alice@example.com").json()["data"]
    assert [r["request_id"] for r in as_admin] == [request_id]
    assert get(router, "/v1/credits", ADMIN, user="alice@example.com").json() == credits
    assert get(router, "/v1/credits", ADMIN).status_code == 400  # operators hold no credits

    # bob has nothing: refused before anything went upstream, in the SDK's terms
    upstream_calls = len(fake.requests)
    broke = openai.OpenAI(base_url=router.openai_url, api_key=bob, max_retries=0)
    with pytest.raises(openai.APIStatusError) as refused:
        broke.chat.completions.create(model="priced", messages=HELLO)
    assert refused.value.status_code == 402
    assert refused.value.code == "insufficient_credits"
    assert refused.value.type == "insufficient_quota"
    # in the Anthropic dialect too, with its own error type
    claude = anthropic.Anthropic(base_url=router.url, api_key=bob, max_retries=0)
    with pytest.raises(anthropic.APIStatusError) as billing:
        claude.messages.create(model="priced", max_tokens=10, messages=HELLO)
    assert billing.value.status_code == 402
    assert billing.value.body["error"]["type"] == "billing_error"
    assert len(fake.requests) == upstream_calls
    bob_rows = get(router, "/v1/usage", bob).json()["data"]
    assert [(r["status"], r["http_status"], r["charged_usd"]) for r in bob_rows] == [
        ("refused", 402, "0"),
        ("refused", 402, "0"),
    ]
    assert {r["dialect"] for r in bob_rows} == {"openai.chat", "anthropic.messages"}


def test_usage_filters_and_pages(router: RouterServer, cli: Cli) -> None:
    key = cli.user_with_key("paula@example.com")
    cli("credits", "grant", "paula@example.com", "1")
    client = openai.OpenAI(base_url=router.openai_url, api_key=key, max_retries=0)
    ids = [
        client.chat.completions.with_raw_response.create(
            model="priced", messages=HELLO, extra_headers={"x-request-id": f"page-{i}"}
        ).headers["x-request-id"]
        for i in range(5)
    ]
    seen: list[str] = []
    cursor = None
    while True:
        params = {"limit": 2, **({"cursor": cursor} if cursor else {})}
        page = get(router, "/v1/usage", key, **params).json()
        seen += [row["request_id"] for row in page["data"]]
        if not page["has_more"]:
            break
        cursor = page["next_cursor"]
    assert seen == ids[::-1]  # newest first, each once
    later = get(router, "/v1/usage", key, start="2000-01-01", end="2100-01-01").json()["data"]
    assert len(later) == 5
    assert get(router, "/v1/usage", key, start="2100-01-01").json()["data"] == []
    assert get(router, "/v1/usage", key, model="streamy").json()["data"] == []
    for bad in ({"limit": "0"}, {"limit": "1001"}, {"start": "yesterday"}, {"cursor": "!!"}):
        answer = get(router, "/v1/usage", key, **bad)
        assert answer.status_code == 400, bad
        assert answer.json()["error"]["param"] == next(iter(bad))


def test_200_concurrent_streams_against_a_balance_for_20(
    router: RouterServer, cli: Cli, db: Path | str
) -> None:
    key = cli.user_with_key("burst@example.com")
    # each stream holds (and costs) exactly 50 output tokens at 2e6: 1e8 pico-USD
    cli("credits", "grant", "burst@example.com", "0.002")
    balances: list[int] = []
    holds: list[float] = []  # lmrouter_credit_holds_outstanding, scraped during the burst

    async def one(client: openai.AsyncOpenAI) -> str:
        try:
            stream = await client.chat.completions.create(
                model="streamy", messages=HELLO, stream=True, max_tokens=50
            )
            text = "".join([c.choices[0].delta.content or "" async for c in stream if c.choices])
            assert text == "x" * 40
            return "ok"
        except openai.APIStatusError as err:
            assert err.status_code == 402 and err.code == "insufficient_credits", err
            return "refused"

    async def watch(done: asyncio.Event) -> None:
        async with httpx.AsyncClient(
            headers={"authorization": f"Bearer {key}"}, timeout=60
        ) as http:
            while not done.is_set():
                answer = await http.get(f"{router.url}/v1/credits")
                balances.append(pico(answer.json()["balance_usd"]))

    async def scrape(done: asyncio.Event) -> None:
        async with httpx.AsyncClient(timeout=60) as http:  # from loopback: no key needed
            while not done.is_set():
                holds.append(gauge((await http.get(f"{router.url}/metrics")).text))
                await asyncio.sleep(0.01)

    async def burst() -> list[str]:
        # a busy machine may take longer than the SDK's 5 s to connect 200 clients at once
        client = openai.AsyncOpenAI(
            base_url=router.openai_url, api_key=key, max_retries=0, timeout=120
        )
        done = asyncio.Event()
        watchers = [asyncio.create_task(watch(done)), asyncio.create_task(scrape(done))]
        try:
            return await asyncio.gather(*(one(client) for _ in range(200)))
        finally:
            done.set()
            await asyncio.gather(*watchers)
            await client.close()

    results = asyncio.run(burst())
    assert results.count("ok") == 20 and results.count("refused") == 180
    assert balances and all(b >= 0 for b in balances)
    # never more requests holding credits than the balance covers. (Whether a scrape saw any
    # hold at all is the scheduler's business: on a busy machine the worker answers it after
    # the 200 requests queued before it, when the 0.6 s streams are over.)
    assert max(holds) <= 20
    # a request ends (hold released, usage written in the next batch) just after its client
    # read the last byte: wait for that, not for a lucky moment
    within(10, lambda: gauge(httpx.get(f"{router.url}/metrics").text) == 0)

    def usage() -> list[Any]:
        return query(
            db,
            "SELECT u.status, u.charged_pico, u.written_off_pico FROM usage u "
            "JOIN users s ON s.id = u.user_id WHERE s.email = 'burst@example.com'",
        )

    within(10, lambda: len(usage()) == 200)
    rows = usage()
    assert get(router, "/v1/credits", key).json()["balance_usd"] == "0"
    assert sorted({r[0] for r in rows}) == ["ok", "refused"]
    assert sum(r[1] for r in rows) == pico("0.002")  # every pico-dollar accounted for
    assert all(r[2] == 0 for r in rows)  # and nothing was ever owed beyond the balance
    ledger_matches_lots(db)


def test_a_client_that_leaves_mid_stream_pays_what_the_provider_reports(
    router: RouterServer, cli: Cli, db: Path | str, fake: FakeOpenAI
) -> None:
    """The router reads the rest of the stream (not relaying it) for the usage at its end."""
    key = cli.user_with_key("quitter@example.com")
    cli("credits", "grant", "quitter@example.com", "1")
    client = openai.OpenAI(base_url=router.openai_url, api_key=key, max_retries=0)
    disconnects = len(fake.disconnects)
    with client.chat.completions.with_streaming_response.create(
        model="chatty", messages=HELLO, stream=True
    ) as response:
        request_id = response.headers["x-request-id"]
        received = 0
        for line in response.iter_lines():
            received += line.startswith("data: {")
            if received == 10:
                break  # and close the connection

    def recorded() -> bool:
        return bool(query(db, "SELECT 1 FROM usage WHERE request_id = ?", (request_id,)))

    within(10, recorded)
    [(status, estimated, source, prompt, completion, cost, charged)] = query(
        db,
        "SELECT status, estimated, usage_source, prompt_tokens, completion_tokens, cost_pico, "
        "charged_pico FROM usage WHERE request_id = ?",
        (request_id,),
    )
    assert (status, estimated, source) == ("client_disconnected", 0, "provider")
    assert completion == 400  # the whole answer (400 deltas), not the ten the client read
    assert charged == cost == prompt * 10**6 + completion * 2 * 10**6
    assert len(fake.disconnects) == disconnects  # read to its end: nothing was cut
    balance = get(router, "/v1/credits", key).json()["balance_usd"]
    assert pico(balance) == PICO - charged
    ledger_matches_lots(db)


def test_earliest_expiring_lot_pays_first_and_sweeps_expire_the_rest(
    router: RouterServer, cli: Cli, db: Path | str
) -> None:
    key = cli.user_with_key("lots@example.com")
    now = datetime.now(UTC)

    def grant(usd: str, days_ago: int, note: str) -> None:
        when = (now - timedelta(days=days_ago)).isoformat()
        cli("credits", "grant", "lots@example.com", usd, "--purchased-at", when, "--note", note)

    grant("1", 0, "new")  # expires in 365 days
    grant("0.001", 300, "old")  # expires in 65 days
    grant("0.001", 100, "middle")  # expires in 265 days
    grant("5", 400, "expired")  # expired 35 days ago: not spendable, not swept yet

    client = openai.OpenAI(base_url=router.openai_url, api_key=key, max_retries=0)
    client.chat.completions.create(model="priced", messages=HELLO)  # costs 0.0011

    lots = {lot["note"]: lot for lot in cli.show("lots@example.com")["lots"]}
    assert lots["old"]["remaining_usd"] == "0"  # the first 0.001
    assert lots["middle"]["remaining_usd"] == "0.0009"  # then 0.0001 of the next to expire
    assert lots["new"]["remaining_usd"] == "1"
    assert lots["expired"]["remaining_usd"] == "5" and lots["expired"]["expired"] is True
    assert cli.show("lots@example.com")["balance_usd"] == "1.0009"

    out = cli("credits", "sweep", "--as-of", (now + timedelta(days=300)).isoformat())
    assert "expired 2 lots" in out  # "middle" (its 0.0009) and "expired" (its 5)
    lots = {lot["note"]: lot for lot in cli.show("lots@example.com")["lots"]}
    assert [lots[n]["remaining_usd"] for n in ("old", "middle", "new", "expired")] == [
        "0",
        "0",
        "1",
        "0",
    ]
    expiries = query(
        db,
        "SELECT l.amount_pico, c.note FROM ledger l JOIN credit_lots c ON c.id = l.lot_id "
        "WHERE l.kind = 'expiry' AND c.note IN ('middle', 'expired') ORDER BY c.note",
    )
    assert expiries == [(-5 * PICO, "expired"), (-pico("0.0009"), "middle")]
    ledger_matches_lots(db)

    # the running server hears of a sweep that takes everything: the next request is refused
    cli("credits", "sweep", "--as-of", (now + timedelta(days=400)).isoformat())

    def refused() -> bool:
        try:
            client.chat.completions.create(model="priced", messages=HELLO)
        except openai.APIStatusError as err:
            return err.status_code == 402
        return False

    within(3, refused)
    # and of a grant: spendable again without a restart
    cli("credits", "grant", "lots@example.com", "0.5")

    def accepted() -> bool:
        try:
            client.chat.completions.create(model="priced", messages=HELLO)
        except openai.APIStatusError:
            return False
        return True

    within(3, accepted)
    ledger_matches_lots(db)


@pytest.mark.sqlite_only
def test_one_process_per_sqlite_file(router: RouterServer, fake: FakeOpenAI, cli: Cli) -> None:
    """Holds live in a process's memory: a second process on the same file would let every
    user spend their balance twice. Refused before any worker starts, and at start-up."""
    key = cli.user_with_key("solo@example.com")
    alone = config(fake.base_url, disabled=("ratelimit", "accounts"))
    with pytest.raises(RuntimeError) as workers:
        RouterServer(alone, workers=2).start()
    refused = str(workers.value)
    assert "`server.workers`" in refused and "each request's credit hold (credits)" in refused
    assert "postgresql://" in refused  # what is missing
    # a second `lmrouter serve` on the database the module's router is serving
    elsewhere = router.workdir / "again"
    elsewhere.mkdir()
    same_file = f"sqlite:///{router.workdir / 'credits.db'}"
    text = config(fake.base_url, same_file)
    with pytest.raises(RuntimeError) as second:
        RouterServer(text, workdir=elsewhere).start()
    # it exited (one hanging around would be "did not start within …" instead)
    assert "router exited with 1" in str(second.value)
    assert "another router process is serving" in str(second.value)
    assert get(router, "/v1/credits", key).status_code == 200  # the first one serves on
