"""What the dashboard tests share: the real router (granian) with the accounts, credits and
dashboard plugins on a real SQLite file, a fake OpenAI upstream, and the `lmrouter` CLI."""

from __future__ import annotations

import time
import tomllib
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import openai
import pytest

from lmrouter.testing import config as builder
from lmrouter.testing import operator
from lmrouter.testing.fake_openai import Behavior, FakeOpenAI
from lmrouter.testing.server import RouterServer
from lmrouter_dashboard.testing import DashboardClient

OPERATOR = "sk-operator-dashboard-tests"
PASSWORD = "correct battery staple horse"
# the fake reports 1000 prompt and 50 completion tokens: at $1 / $2 per 1M, $0.0011 a request
USAGE = {"prompt_tokens": 1000, "completion_tokens": 50}
TERMS = "These are the terms.\n\nUse the router kindly."


def config(
    upstream: str,
    *,
    store: str = "sqlite:///dashboard.db",
    terms_version: str = "v1",
    dashboard: dict[str, Any] | None = None,
    credits: dict[str, Any] | None = None,
    **sections: Any,
) -> str:
    """The dashboard tests' router; ``dashboard``/``credits`` add to those tables, and any
    other keyword is a section of its own (``stripe={...}``, ``server={...}``)."""
    price, capped = {"input": 1, "output": 2}, {"max_output_tokens": 100}
    return builder.config(
        admin=OPERATOR,
        storage={"url": store},
        accounts={"secret": "a-test-secret-of-enough-length"},
        credits={"flush_interval": 0.02, **(credits or {})},
        dashboard={
            "signups_per_hour": 0,
            "support_contact": "help@example.com",
            "terms_file": "terms.txt",
            "terms_version": terms_version,
            **(dashboard or {}),
        },
        providers={"up": builder.provider("openai", upstream, "sk-upstream", byok=True)},
        models={
            **{
                name: builder.model(builder.route("up", f"{name}-up", price=price), **capped)
                for name in ("gpt-x", "gpt-y")
            },
            "broken": builder.route("up", "broken-up", price=price),
        },
        **sections,
    )


@pytest.fixture(scope="module")
def fake() -> Iterator[FakeOpenAI]:
    fake = FakeOpenAI()
    fake.script("gpt-x-up", Behavior(usage=USAGE))
    fake.script("gpt-y-up", Behavior(usage=USAGE))
    fake.script("broken-up", Behavior(status=500))
    with fake.run_in_thread():
        yield fake


def start(workdir: Path, upstream: str, **options: Any) -> RouterServer:
    (workdir / "terms.txt").write_text(TERMS)
    return RouterServer(config(upstream, **options), workdir=workdir).start()


@pytest.fixture(scope="module")
def router(tmp_path_factory: pytest.TempPathFactory, fake: FakeOpenAI) -> Iterator[RouterServer]:
    server = start(tmp_path_factory.mktemp("dashboard"), fake.base_url)
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture
def client(router: RouterServer) -> Iterator[DashboardClient]:
    with DashboardClient(router.url) as c:
        yield c


class Kit:
    """Helpers for the tests (``kit`` fixture): pytest's importlib mode keeps conftest from
    being imported by name."""

    OPERATOR = OPERATOR
    PASSWORD = PASSWORD
    TERMS = TERMS
    start = staticmethod(start)

    @staticmethod
    def client(router: RouterServer) -> DashboardClient:
        return DashboardClient(router.url)

    @staticmethod
    def cli(router: RouterServer, *args: str, stdin: str = "") -> str:
        """The `lmrouter` command on the server's config and database, in this process."""
        return operator.cli(router.config_path, *args, stdin=stdin)

    @staticmethod
    def query(router: RouterServer, sql: str, params: tuple[Any, ...] = ()) -> list[Any]:
        """Rows of the router's database: its SQLite file, or the server database it names."""
        url = tomllib.loads(router.config_path.read_text())["storage"]["url"]
        db = router.workdir / "dashboard.db" if url.startswith("sqlite:") else url
        return operator.query(db, sql, params)

    @staticmethod
    def sdk(router: RouterServer, key: str) -> openai.OpenAI:
        return openai.OpenAI(base_url=router.openai_url, api_key=key, max_retries=0)

    @staticmethod
    def within(seconds: float, attempt: Callable[[], bool]) -> None:
        deadline = time.monotonic() + seconds
        while not attempt():
            assert time.monotonic() < deadline, f"not within {seconds}s"
            time.sleep(0.05)


@pytest.fixture(scope="session")
def kit() -> type[Kit]:
    return Kit
