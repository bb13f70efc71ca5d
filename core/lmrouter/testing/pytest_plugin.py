"""pytest fixtures for LMRouter and its plugins; loaded automatically once lmrouter is installed.

- ``fake_openai``, ``fake_anthropic``, ``fake_gemini``: a faithful fake of that provider's API
  running in a background thread (``.base_url``, ``.script(model, Behavior)``, ``.requests``).
- ``lmrouter_server``: ``lmrouter_server(config_text, **kwargs)`` starts the real router
  (:class:`RouterServer`) and stops it when the test ends.
- ``postgres_cluster`` (one per session) and ``postgres_url`` (a new empty database per test):
  a real PostgreSQL server (:class:`lmrouter.testing.servers.PostgresCluster`).
- ``store_kind`` ("sqlite" or "postgres") and ``make_store``: a test whose fixtures ask for
  ``store_kind`` runs once per store when its conftest calls :func:`parametrize_stores` from
  ``pytest_generate_tests`` (``@pytest.mark.sqlite_only`` keeps a test about SQLite itself to
  SQLite); ``make_store(path)`` is that kind's store for ``path`` (a file, or a PostgreSQL
  database of its own per path). ``module_postgres_url``: a database per module and store, for
  a module-scoped router run once per store.
- ``redis_server`` (one per session) and ``redis_url`` (emptied for each test): a real
  ``redis-server`` (:class:`lmrouter.testing.servers.RedisServer`).
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

import pytest

from lmrouter.testing.server import RouterServer


@pytest.fixture
def fake_openai() -> Iterator[Any]:
    from lmrouter.testing.fake_openai import FakeOpenAI

    fake = FakeOpenAI()
    with fake.run_in_thread():
        yield fake


@pytest.fixture
def fake_anthropic() -> Iterator[Any]:
    from lmrouter.testing.fake_anthropic import FakeAnthropic

    fake = FakeAnthropic()
    with fake.run_in_thread():
        yield fake


@pytest.fixture
def fake_gemini() -> Iterator[Any]:
    from lmrouter.testing.fake_gemini import FakeGemini

    fake = FakeGemini()
    with fake.run_in_thread():
        yield fake


@pytest.fixture(scope="session")
def postgres_cluster() -> Iterator[Any]:
    from lmrouter.testing.servers import PostgresCluster

    with PostgresCluster() as cluster:
        yield cluster


@pytest.fixture
def postgres_url(postgres_cluster: Any) -> Iterator[str]:
    url = postgres_cluster.database()
    yield url
    postgres_cluster.drop(url)


STORES = ("sqlite", "postgres")


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line(
        "markers", "sqlite_only: a test of the embedded store itself: not run on PostgreSQL"
    )


def parametrize_stores(metafunc: pytest.Metafunc, scope: Any = None) -> None:
    """For ``pytest_generate_tests``: every store for a test that uses ``store_kind``.
    ``scope="module"`` for module-scoped fixtures that depend on it (one router per store)."""
    if "store_kind" in metafunc.fixturenames:
        only = metafunc.definition.get_closest_marker("sqlite_only")
        metafunc.parametrize("store_kind", ["sqlite"] if only else list(STORES), scope=scope)


@pytest.fixture(scope="module")
def module_postgres_url(store_kind: str, request: pytest.FixtureRequest) -> Iterator[str | None]:
    """For a module's router on each store (with ``parametrize_stores(metafunc, "module")``):
    an empty PostgreSQL database's URL when ``store_kind`` is "postgres", else None."""
    if store_kind != "postgres":
        yield None
        return
    cluster = request.getfixturevalue("postgres_cluster")
    url = cluster.database()
    yield url
    cluster.drop(url)


@pytest.fixture
def store_kind() -> str:
    return "sqlite"  # unless parametrize_stores chose


@pytest.fixture
def make_store(store_kind: str, request: pytest.FixtureRequest) -> Callable[[Any], Any]:
    from pathlib import Path

    from lmrouter.storage import SQLiteStore

    if store_kind == "sqlite":
        return lambda path: SQLiteStore(f"sqlite:///{path}", Path(path))
    from lmrouter_postgres import PostgresStore

    cluster = request.getfixturevalue("postgres_cluster")
    # One database per test, one schema in it per path: a schema costs far less to make and to
    # drop than a database (a hypothesis test makes one per example).
    database: list[str] = []
    urls: dict[str, str] = {}
    request.addfinalizer(lambda: cluster.drop(*database))

    def make(path: Any) -> Any:
        if str(path) not in urls:
            if not database:
                database.append(cluster.database())
            schema = f"s_{len(urls) + 1}"
            cluster.sql(f'CREATE SCHEMA "{schema}"', database=database[0].rpartition("/")[2])
            urls[str(path)] = f"{database[0]}?search_path={schema}"
        return PostgresStore(urls[str(path)])

    return make


@pytest.fixture(scope="session")
def redis_server() -> Iterator[Any]:
    from lmrouter.testing.servers import RedisServer

    with RedisServer() as server:
        yield server


@pytest.fixture
def redis_url(redis_server: Any) -> str:
    import socket

    with socket.create_connection(("127.0.0.1", redis_server.port), timeout=10) as sock:
        sock.sendall(b"FLUSHALL\r\n")
        assert sock.recv(16).startswith(b"+OK")
    return redis_server.url


@pytest.fixture
def lmrouter_server() -> Iterator[Callable[..., RouterServer]]:
    started: list[RouterServer] = []

    def start(config_text: str, **kwargs: Any) -> RouterServer:
        server = RouterServer(config_text, **kwargs)
        started.append(server)
        return server.start()

    yield start
    for server in started:
        server.__exit__(None, None, None)
