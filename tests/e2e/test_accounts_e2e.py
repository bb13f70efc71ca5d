"""Accounts end to end: the `lmrouter users|keys|byok` commands (real subprocesses) on a real
config and SQLite file, and the real router (granian) answering the official openai SDK while
they run. Revocations and suspensions made by the CLI reach the running router within a second;
BYOK keys go upstream in place of the provider's key and are never written anywhere in clear."""

from __future__ import annotations

import hashlib
import json
import os
import re
import subprocess
import sys
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import openai
import pytest

from lmrouter.testing import servers
from lmrouter.testing.fake_openai import FakeOpenAI
from lmrouter.testing.operator import query
from lmrouter.testing.pytest_plugin import parametrize_stores
from lmrouter.testing.server import RouterServer

ADMIN = "sk-admin-accounts-e2e"
UPSTREAM_KEY = "sk-upstream-provider-key-77"
SECRET = "e2e-server-secret-0123456789abcdef"
OWN_KEY = "sk-proj-alices-very-own-key-5f1e2d"
ANON_KEY = "sk-anon-byok-key-9c8b7a"
HELLO = [{"role": "user", "content": "Hello!"}]
KEY_LINE = re.compile(r"sk-lmr-[A-Za-z0-9_-]{32}")


SQLITE = "sqlite:///accounts.db"


def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    parametrize_stores(metafunc, scope="module")  # one router per store


def config(upstream: str, *, anonymous: bool = False, store: str = SQLITE) -> str:
    # Credits and rate limits are other plugins' business: off, so that outcomes here are ours.
    return f"""
[plugins]
disabled = ["credits", "ratelimit"]
[server]
log_level = "debug"
[auth]
keys = ["{ADMIN}"]
[storage]
url = "{store}"
[accounts]
secret = "${{LMROUTER_SECRET:-}}"
allow_anonymous_byok = {"true" if anonymous else "false"}

[providers.up]
type = "openai"
base_url = "{upstream}"
api_key = "{UPSTREAM_KEY}"
byok = true

[[models]]
id = "gpt"
  [[models.routes]]
  provider = "up"
  model = "gpt-x"
  price = {{ input = 0.15, output = 0.60 }}
"""


class Cli:
    """`python -m lmrouter.cli …` against one config, as an operator would run it."""

    def __init__(self, config_path: Path) -> None:
        self.config_path = config_path

    def __call__(
        self, *args: str, stdin: str | None = None, secret: bool = True
    ) -> subprocess.CompletedProcess[str]:
        env = {**os.environ, "LMROUTER_SECRET": SECRET if secret else ""}
        return subprocess.run(
            [sys.executable, "-m", "lmrouter.cli", *args, "--config", str(self.config_path)],
            input=stdin,
            capture_output=True,
            text=True,
            env=env,
            cwd=self.config_path.parent,
            timeout=60,
        )

    def ok(self, *args: str, stdin: str | None = None) -> str:
        result = self(*args, stdin=stdin)
        assert result.returncode == 0, result.stderr
        return result.stdout

    def user_with_key(self, email: str, *extra: str) -> tuple[str, str]:
        """A new user and key: (key id, secret key)."""
        self.ok("users", "add", email)
        out = self.ok("keys", "create", email, *extra)
        key = out.strip().splitlines()[-1]
        assert KEY_LINE.fullmatch(key), out
        key_id = re.search(r"created key ([0-9a-f]{32})", out)
        assert key_id, out
        return key_id.group(1), key


def on_disk(db: Path | str) -> bytes:
    """Every byte the store keeps: SQLite's file and its WAL, or a PostgreSQL database's
    whole dump (pg_dump, data and schema)."""
    if isinstance(db, Path):
        return b"".join(p.read_bytes() for p in sorted(db.parent.glob(db.name + "*")))
    dump = [str(servers._pg_bin() / "pg_dump"), "--no-owner", db]
    return subprocess.run(dump, capture_output=True, check=True, timeout=60).stdout


def request_log(router: RouterServer, request_id: str, wait: float = 5.0) -> dict[str, Any]:
    """The router's JSON log line for one request (written just after the reply)."""
    deadline = time.monotonic() + wait
    while time.monotonic() < deadline:
        for line in router.logs().splitlines():
            if line.startswith("{") and request_id in line:
                record = json.loads(line)
                if record.get("event") == "request" and record["request_id"] == request_id:
                    return record
        time.sleep(0.02)
    raise AssertionError(f"no request log line for {request_id}")


def ask(router: RouterServer, key: str) -> tuple[str, Any]:
    """One chat completion with ``key``: (request id, the completion)."""
    request_id = f"acc-{uuid.uuid4().hex[:12]}"
    client = openai.OpenAI(base_url=router.openai_url, api_key=key, max_retries=0)
    reply = client.chat.completions.create(
        model="gpt", messages=HELLO, extra_headers={"x-request-id": request_id}
    )
    return request_id, reply


# A running router notices the CLI's changes at its next poll of the revision (every 0.5 s). The
# bound is a check that it does without a restart, not of how fast: on a busy machine one
# request can take longer than a poll.
NOTICED = 10.0


def within(seconds: float, attempt: Callable[[], bool]) -> float:
    """Repeat ``attempt`` until it returns True; how long that took (fails past ``seconds``)."""
    began = time.monotonic()
    while not attempt():
        assert time.monotonic() - began < seconds, f"not within {seconds}s"
        time.sleep(0.02)
    return time.monotonic() - began


def refused_with(router: RouterServer, key: str, error: type[Exception]) -> Callable[[], bool]:
    def attempt() -> bool:
        try:
            ask(router, key)
        except error:
            return True
        return False

    return attempt


def accepted(router: RouterServer, key: str) -> Callable[[], bool]:
    def attempt() -> bool:
        try:
            ask(router, key)
        except openai.APIStatusError:
            return False
        return True

    return attempt


@pytest.fixture(scope="module")
def fake() -> Iterator[FakeOpenAI]:
    fake = FakeOpenAI()  # any key: the tests look at which one arrived
    with fake.run_in_thread():
        yield fake


@pytest.fixture(scope="module")
def store(module_postgres_url: str | None) -> str:
    return module_postgres_url or SQLITE


@pytest.fixture(scope="module")
def workdir(tmp_path_factory: pytest.TempPathFactory, fake: FakeOpenAI, store: str) -> Path:
    path = tmp_path_factory.mktemp("accounts-e2e")
    (path / "lmrouter.toml").write_text(config(fake.base_url, store=store))
    return path


@pytest.fixture(scope="module")
def cli(workdir: Path) -> Cli:
    return Cli(workdir / "lmrouter.toml")


@pytest.fixture(scope="module")
def db(workdir: Path, store: str) -> Path | str:
    """What query and on_disk read: the SQLite file, or the PostgreSQL database's URL."""
    return workdir / "accounts.db" if store == SQLITE else store


@pytest.fixture(scope="module")
def router(workdir: Path, fake: FakeOpenAI, cli: Cli, store: str) -> Iterator[RouterServer]:
    cli.ok("users", "list")  # creates and migrates the database before the server starts
    with RouterServer(
        config(fake.base_url, store=store), workdir=workdir, env={"LMROUTER_SECRET": SECRET}
    ) as server:
        yield server


# -- the commands -------------------------------------------------------------------------------


def test_users_and_keys_commands(cli: Cli, db: Path | str) -> None:
    out = cli.ok("users", "add", " Carol@Example.com ", "--password-stdin", stdin="carols pass\n")
    assert "carol@example.com" in out
    duplicate = cli("users", "add", "CAROL@example.com")
    assert duplicate.returncode == 1
    assert "error: a user with email carol@example.com already exists" in duplicate.stderr
    bad = cli("users", "add", "not-an-email")
    assert bad.returncode == 1 and "not an email address" in bad.stderr
    short = cli("users", "add", "dave@example.com", "--password-stdin", stdin="short\n")
    assert short.returncode == 1 and "too short" in short.stderr
    unknown = cli("keys", "create", "nobody@example.com")
    assert unknown.returncode == 1 and "no user with email nobody@example.com" in unknown.stderr
    negative = cli("keys", "create", "carol@example.com", "--rpm", "-3")
    assert negative.returncode == 1 and "rpm must be a whole number" in negative.stderr

    out = cli.ok(
        "keys", "create", "carol@example.com", "--name", "ci box", "--rpm", "60",
        "--max-concurrent", "2",
    )  # fmt: skip
    lines = out.strip().splitlines()
    key = lines[-1]
    assert KEY_LINE.fullmatch(key) and len(lines) > 1  # other information first, the key last
    assert key not in "\n".join(lines[:-1])

    listing = cli.ok("keys", "list", "carol@example.com")
    assert key[:12] in listing and "ci box" in listing and "rpm=60,max_concurrent=2" in listing
    assert key not in listing
    users = cli.ok("users", "list")
    assert re.search(r"carol@example\.com\s+active\s+no\s+yes\s+1", users), users

    raw = on_disk(db)
    assert key.encode() not in raw and b"carols pass" not in raw
    [(stored, prefix, password_hash)] = query(
        db,
        "SELECT k.hash, k.prefix, u.password_hash FROM api_keys k JOIN users u "
        "ON u.id = k.user_id WHERE u.email = 'carol@example.com'",
    )
    assert stored == hashlib.sha256(key.encode()).hexdigest() and prefix == key[:12]
    assert password_hash.startswith("$argon2id$")

    revoke = cli("keys", "revoke", "0" * 32)
    assert revoke.returncode == 1 and "no key with id" in revoke.stderr


# -- the router ---------------------------------------------------------------------------------


def test_key_works_and_a_revocation_applies_while_it_runs(
    router: RouterServer, cli: Cli, db: Path
) -> None:
    key_id, key = cli.user_with_key("erin@example.com", "--name", "laptop")
    request_id, reply = ask(router, key)
    assert reply.choices[0].message.content
    line = request_log(router, request_id)
    user_id = query(db, "SELECT id FROM users WHERE email = 'erin@example.com'")[0][0]
    assert line["principal"] == f"user:{user_id}" and line["user_id"] == user_id
    assert line["key_prefix"] == key[:12] and line["billable"] is True and line["status"] == 200
    # last_used_at is written in the background, about a second later
    within(5, lambda: query(db, "SELECT last_used_at FROM api_keys WHERE id = ?", (key_id,))[0][0])

    assert "revoked key" in cli.ok("keys", "revoke", key_id)
    took = within(NOTICED, refused_with(router, key, openai.AuthenticationError))
    print(f"revocation effective after {took:.3f}s")
    with pytest.raises(openai.AuthenticationError) as refused:
        ask(router, key)
    assert refused.value.code == "invalid_api_key"
    assert "already revoked" in cli.ok("keys", "revoke", key_id)


def test_suspend_is_403_and_resume_restores(router: RouterServer, cli: Cli) -> None:
    _, key = cli.user_with_key("frank@example.com")
    assert accepted(router, key)()
    cli.ok("users", "suspend", "frank@example.com")
    within(NOTICED, refused_with(router, key, openai.PermissionDeniedError))
    with pytest.raises(openai.PermissionDeniedError) as refused:
        ask(router, key)
    assert refused.value.status_code == 403 and refused.value.code == "account_suspended"
    assert "already suspended" in cli.ok("users", "suspend", "frank@example.com")
    cli.ok("users", "resume", "frank@example.com")
    within(NOTICED, accepted(router, key))


def test_byok_key_goes_upstream_unbilled_and_is_never_written_in_clear(
    router: RouterServer, cli: Cli, db: Path | str, fake: FakeOpenAI
) -> None:
    _, key = cli.user_with_key("grace@example.com")
    unknown = cli("byok", "set", "grace@example.com", "openai", "--key-stdin", stdin=OWN_KEY)
    assert unknown.returncode == 1
    assert "unknown provider 'openai'; configured providers: up" in unknown.stderr
    cli.ok("byok", "set", "grace@example.com", "up", "--key-stdin", stdin=OWN_KEY + "\n")
    # Without the secret the key was stored with, the operator hears it, not the user: at the
    # config check on SQLite (the file is read there), when the server starts on PostgreSQL.
    if isinstance(db, Path):
        no_secret = cli("users", "list", secret=False)
        assert no_secret.returncode == 1 and "stored BYOK keys need the secret" in no_secret.stderr
    else:
        without = RouterServer(router.config_path.read_text(), env={"LMROUTER_SECRET": ""})
        with pytest.raises(RuntimeError, match="stored BYOK keys need the secret"):
            without.start()

    def upstream_saw_own_key() -> bool:
        fake.reset()
        ask(router, key)
        return fake.requests[-1].headers["authorization"] == f"Bearer {OWN_KEY}"

    within(NOTICED, upstream_saw_own_key)
    request_id, _ = ask(router, key)
    assert fake.requests[-1].headers["authorization"] == f"Bearer {OWN_KEY}"
    line = request_log(router, request_id)
    assert line["billable"] is False and line["status"] == 200 and line["cost_pico"] > 0

    assert OWN_KEY not in router.logs()
    assert OWN_KEY.encode() not in on_disk(db)
    assert len(query(db, "SELECT ciphertext FROM byok_keys")) >= 1

    cli.ok("byok", "remove", "grace@example.com", "up")

    def upstream_saw_provider_key() -> bool:
        fake.reset()
        ask(router, key)
        return fake.requests[-1].headers["authorization"] == f"Bearer {UPSTREAM_KEY}"

    within(NOTICED, upstream_saw_provider_key)
    request_id, _ = ask(router, key)
    assert request_log(router, request_id)["billable"] is True
    again = cli("byok", "remove", "grace@example.com", "up")
    assert again.returncode == 1 and "no BYOK key stored" in again.stderr


def test_delete_revokes_at_once_and_erases_personal_data(
    router: RouterServer, cli: Cli, db: Path
) -> None:
    _, key = cli.user_with_key("heidi@example.com", "--name", "heidi's phone")
    cli.ok("users", "add", "heidi2@example.com")  # an unrelated user stays as they are
    cli.ok("byok", "set", "heidi@example.com", "up", "--key-stdin", stdin=OWN_KEY)
    cli.ok("keys", "create", "heidi@example.com")
    user_id = query(db, "SELECT id FROM users WHERE email = 'heidi@example.com'")[0][0]
    within(NOTICED, accepted(router, key))

    out = cli.ok("users", "delete", "heidi@example.com", "--yes")
    assert "2 keys revoked" in out
    within(NOTICED, refused_with(router, key, openai.AuthenticationError))

    assert query(
        db, "SELECT email, password_hash, status, deleted_at IS NOT NULL FROM users WHERE id = ?",
        (user_id,),
    ) == [(None, None, "deleted", 1)]  # fmt: skip
    assert query(db, "SELECT COUNT(*) FROM byok_keys WHERE user_id = ?", (user_id,)) == [(0,)]
    working_or_named = (
        "SELECT COUNT(*) FROM api_keys WHERE user_id = ? AND (revoked_at IS NULL OR name <> '')"
    )
    assert query(db, working_or_named, (user_id,)) == [(0,)]
    assert query(db, "SELECT COUNT(*) FROM users WHERE email = 'heidi2@example.com'") == [(1,)]
    gone = cli("users", "suspend", "heidi@example.com")
    assert gone.returncode == 1 and "no user with email heidi@example.com" in gone.stderr


def test_anonymous_byok_keys_only_when_allowed(
    router: RouterServer, fake: FakeOpenAI, tmp_path: Path
) -> None:
    with pytest.raises(openai.AuthenticationError):
        ask(router, f"BYOK:{ANON_KEY}")

    with RouterServer(
        config(fake.base_url, anonymous=True), workdir=tmp_path, env={"LMROUTER_SECRET": ""}
    ) as open_router:
        fake.reset()
        request_id, reply = ask(open_router, f"BYOK:{ANON_KEY}")
        assert reply.choices[0].message.content
        assert [r.headers["authorization"] for r in fake.requests] == [f"Bearer {ANON_KEY}"]
        line = request_log(open_router, request_id)
        assert line["principal"] == "byok:anonymous" and line["billable"] is False
        with pytest.raises(openai.AuthenticationError):
            ask(open_router, "BYOK:")
        assert ANON_KEY not in open_router.logs()
        assert ANON_KEY.encode() not in on_disk(tmp_path / "accounts.db")
