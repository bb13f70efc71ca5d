"""BYOK cannot be faked (issue #19, finding 3): the real router (granian) with the accounts and
credits plugins, a fake OpenAI upstream that accepts any key (as a local vLLM or Ollama does),
and the ``lmrouter`` commands beside it.

``anykey`` is such a provider, left at ``byok = false``; ``vendor`` is one that checks keys,
opened to users' own keys with ``byok = true``."""

from __future__ import annotations

import contextlib
import io
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from unittest import mock

import openai
import pytest

from lmrouter.cli import main
from lmrouter.config import ConfigError, validate
from lmrouter.providers import Provider
from lmrouter.testing import operator
from lmrouter.testing.fake_openai import FakeOpenAI
from lmrouter.testing.operator import query
from lmrouter.testing.pytest_plugin import parametrize_stores
from lmrouter.testing.server import RouterServer
from lmrouter_openai import OpenAIProvider

SECRET = "a-long-enough-server-secret-for-byok-tests"
OPERATOR_KEY = "sk-operator-upstream-key"
FAKE_KEY = "not-a-real-key"
HELLO = [{"role": "user", "content": "Hello!"}]
SQLITE = "sqlite:///byok.db"


def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    parametrize_stores(metafunc, scope="module")  # one router per store: SQLite, PostgreSQL


def config(
    upstream: str, *, anykey_byok: bool = False, extra: str = "", store: str = SQLITE
) -> str:
    return f"""
[plugins]
disabled = ["ratelimit"]
[storage]
url = "{store}"
[accounts]
secret = "{SECRET}"
allow_anonymous_byok = true
[credits]
flush_interval = 0.02

[providers.anykey]
type = "openai"
base_url = "{upstream}"
api_key = "{OPERATOR_KEY}"
byok = {"true" if anykey_byok else "false"}

[providers.vendor]
type = "openai"
base_url = "{upstream}"
api_key = "{OPERATOR_KEY}"
organization = "org-operator"
byok = true
{extra}
[[models]]
id = "local"
max_output_tokens = 100
  [[models.routes]]
  provider = "anykey"
  model = "local-x"
  price = {{ input = 1, output = 1 }}

[[models]]
id = "hosted"
max_output_tokens = 100
  [[models.routes]]
  provider = "vendor"
  model = "hosted-x"
  price = {{ input = 1, output = 1 }}
"""


def run_cli(config_path: Path, *args: str, stdin: str = "") -> tuple[int, str]:
    """``lmrouter ARGS`` in this process: its exit code and what it printed on stderr."""
    err = io.StringIO()
    with (
        contextlib.redirect_stdout(io.StringIO()),
        contextlib.redirect_stderr(err),
        mock.patch("sys.stdin", io.StringIO(stdin)),
    ):
        code = main([*args, "--config", str(config_path)])
    return code, err.getvalue()


@pytest.fixture(scope="module")
def fake() -> Iterator[FakeOpenAI]:
    fake = FakeOpenAI()  # accepts any key at all
    with fake.run_in_thread():
        yield fake


@pytest.fixture(scope="module")
def store(module_postgres_url: str | None) -> str:
    return module_postgres_url or SQLITE


@pytest.fixture(scope="module")
def router(
    tmp_path_factory: pytest.TempPathFactory, fake: FakeOpenAI, store: str
) -> Iterator[RouterServer]:
    workdir = tmp_path_factory.mktemp("byok")
    with RouterServer(config(fake.base_url, store=store), workdir=workdir) as server:
        yield server


@pytest.fixture(scope="module")
def db(router: RouterServer, store: str) -> Path | str:
    """What operator.query reads: the SQLite file, or the PostgreSQL database's URL."""
    return router.workdir / "byok.db" if store == SQLITE else store


def within(seconds: float, attempt: Callable[[], bool]) -> None:
    deadline = time.monotonic() + seconds
    while not attempt():
        assert time.monotonic() < deadline, f"not within {seconds}s"
        time.sleep(0.05)


def sent_to(fake: FakeOpenAI, model: str) -> dict[str, str]:
    return [r.headers for r in fake.requests if (r.json or {}).get("model") == model][-1]


def test_byok_set_refuses_a_provider_without_byok(router: RouterServer, db: Path | str) -> None:
    operator.user_with_key(router.config_path, "ivan@example.com")
    code, err = run_cli(
        router.config_path, "byok", "set", "ivan@example.com", "anykey", "--key-stdin",
        stdin=FAKE_KEY,
    )  # fmt: skip
    assert code == 1
    assert "provider 'anykey' does not accept users' own keys" in err
    assert "byok = true" in err and "providers that do: vendor" in err
    assert query(db, "SELECT COUNT(*) FROM byok_keys") == [(0,)]


def test_a_stored_key_for_a_provider_without_byok_is_not_used(
    router: RouterServer, fake: FakeOpenAI, db: Path | str, store: str
) -> None:
    """A key stored while the operator allowed it (another config on the same database) stops
    counting once the provider is not ``byok = true``: the request is charged, with the
    operator's key."""
    key = operator.user_with_key(router.config_path, "judy@example.com")
    operator.cli(router.config_path, "credits", "grant", "judy@example.com", "1")
    earlier = router.workdir / "earlier.toml"
    earlier.write_text(config(fake.base_url, anykey_byok=True, store=store))
    operator.cli(
        earlier, "byok", "set", "judy@example.com", "anykey", "--key-stdin", stdin=FAKE_KEY
    )

    client = openai.OpenAI(base_url=router.openai_url, api_key=key, max_retries=0)
    for _ in range(3):
        answer = client.chat.completions.with_raw_response.create(model="local", messages=HELLO)
        assert sent_to(fake, "local-x")["authorization"] == f"Bearer {OPERATOR_KEY}"
    request_id = answer.headers["x-request-id"]

    def recorded() -> bool:
        return bool(query(db, "SELECT 1 FROM usage WHERE request_id = ?", (request_id,)))

    within(5, recorded)
    [(billable, charged)] = query(
        db, "SELECT billable, charged_pico FROM usage WHERE request_id = ?", (request_id,)
    )
    assert billable == 1 and charged > 0


def test_a_users_key_goes_alone_where_byok_is_on(router: RouterServer, fake: FakeOpenAI) -> None:
    key = operator.user_with_key(router.config_path, "kim@example.com")
    operator.cli(router.config_path, "byok", "set", "kim@example.com", "vendor", "--key-stdin",
                 stdin="sk-kims-own-key")  # fmt: skip
    client = openai.OpenAI(base_url=router.openai_url, api_key=key, max_retries=0)

    def own_key_used() -> bool:  # the server notices the new key within its poll interval
        client.chat.completions.create(model="hosted", messages=HELLO)
        return sent_to(fake, "hosted-x")["authorization"] == "Bearer sk-kims-own-key"

    within(5, own_key_used)
    headers = sent_to(fake, "hosted-x")
    assert OPERATOR_KEY not in str(headers)
    assert "openai-organization" not in headers  # the operator's organization is not the user's


def test_anonymous_byok_only_where_byok_is_on(router: RouterServer, fake: FakeOpenAI) -> None:
    anonymous = openai.OpenAI(base_url=router.openai_url, api_key=f"BYOK:{FAKE_KEY}", max_retries=0)
    before = len(fake.requests)
    with pytest.raises(openai.PermissionDeniedError) as refused:
        anonymous.chat.completions.create(model="local", messages=HELLO)
    assert refused.value.code == "byok_not_allowed"
    assert len(fake.requests) == before  # nothing went upstream, on nobody's key

    anonymous.chat.completions.create(model="hosted", messages=HELLO)
    assert sent_to(fake, "hosted-x")["authorization"] == f"Bearer {FAKE_KEY}"


def test_byok_is_refused_with_a_credential_in_headers(tmp_path: Path) -> None:
    """An operator credential in ``headers`` would go upstream with every user's key too."""
    azure = (
        '[providers.azure]\ntype = "openai"\nbase_url = "https://x.example.com/v1"\n'
        'headers = { "api-key" = "operator-secret" }\nbyok = true\n'
    )
    path = tmp_path / "lmrouter.toml"
    path.write_text(config("http://127.0.0.1:9/v1", extra=azure))
    code, err = run_cli(path, "check")
    assert code == 1, err
    assert "providers.azure.headers" in err
    assert "header 'api-key' looks like a credential of the operator's" in err
    path.write_text(config("http://127.0.0.1:9/v1", extra=azure.replace("byok = true", "")))
    assert run_cli(path, "check")[0] == 0  # without byok, the operator's headers are fine


class SignedProvider(Provider):
    """An adapter that authenticates some other way than with the key it is given."""

    type = "signed"


def test_byok_is_refused_for_an_adapter_that_does_not_use_the_key() -> None:
    raw = {
        "providers": {
            "signed": {"type": "signed", "base_url": "https://x.example.com", "byok": True}
        }
    }
    types = {"signed": SignedProvider, "openai": OpenAIProvider}
    with pytest.raises(ConfigError, match="does not authenticate with the key it is given"):
        validate(raw, path=None, sections={}, provider_types=types)
    raw["providers"]["signed"]["byok"] = False
    assert not validate(raw, path=None, sections={}, provider_types=types).providers["signed"].byok
