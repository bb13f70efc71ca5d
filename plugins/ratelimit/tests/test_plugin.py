"""The plugin's own decisions: config, which limits apply to whom, estimates, headers, and
refusing to run several workers on per-process state."""

from __future__ import annotations

import asyncio
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest

from lmrouter.config import ConfigError
from lmrouter.context import Principal
from lmrouter.gateway import Gateway, load
from lmrouter_ratelimit.backend import Decision, Limits
from lmrouter_ratelimit.headers import duration, quota_headers, retry_headers
from lmrouter_ratelimit.plugin import RateLimitPlugin, refusal_message

BASE = """
[auth]
keys = ["sk-test"]
"""


def gateway(tmp_path: Path, extra: str) -> Gateway:
    path = tmp_path / "lmrouter.toml"
    path.write_text(BASE + extra)
    return Gateway(*load(path))


def started(tmp_path: Path, extra: str) -> RateLimitPlugin:
    plugin = RateLimitPlugin()
    asyncio.run(plugin.lmrouter_startup(gateway(tmp_path, extra)))
    return plugin


@pytest.mark.parametrize(
    ("table", "key"),
    [
        ("rpm = -1", "ratelimit"),
        ("burst = 0", "ratelimit"),
        ("burst = 1.5", "ratelimit"),
        ("rmp = 5", "ratelimit.rmp"),
        ('rpm = "60"', "ratelimit.rpm"),
    ],
)
def test_config_mistakes_are_errors(tmp_path: Path, table: str, key: str) -> None:
    with pytest.raises(ConfigError) as info:
        gateway(tmp_path, f"[ratelimit]\n{table}\n")
    assert info.value.key == key


def test_defaults_are_unlimited(tmp_path: Path) -> None:
    plugin = started(tmp_path, "")
    assert plugin.limits_for(Principal(id="operator:0")) is None


def test_key_limits_override_defaults(tmp_path: Path) -> None:
    plugin = started(tmp_path, "[ratelimit]\nrpm = 60\ntpm = 1000\nburst = 0.5\n")
    default = plugin.limits_for(Principal(id="operator:0"))
    assert default == Limits(rpm=60, rpm_burst=30, tpm=1000, tpm_burst=500)
    own = plugin.limits_for(Principal(id="u", key_id="k", limits={"rpm": 5, "tpm": None}))
    assert own == Limits(rpm=5, rpm_burst=2, tpm=1000, tpm_burst=500)  # tpm: None = default
    unlimited = Principal(id="u", key_id="k", limits={"rpm": 0, "tpm": 0})
    assert plugin.limits_for(unlimited) is None  # 0 = unlimited, even over a default
    tiny = plugin.limits_for(Principal(id="u", limits={"rpm": 1}))
    assert tiny is not None and tiny.rpm_burst == 1  # a burst is at least one request


def test_estimate_is_prompt_plus_output_limit(tmp_path: Path) -> None:
    plugin = started(tmp_path, "[ratelimit]\ntpm = 1000\ndefault_output_tokens = 77\n")

    def ctx(**kw: Any) -> Any:
        return SimpleNamespace(**{"dialect": "openai.chat", "max_output_tokens": None, **kw})

    assert plugin.estimate(ctx(prompt_chars=400, max_output_tokens=300)) == 100 + 300
    assert plugin.estimate(ctx(prompt_chars=1)) == 1 + 77
    assert plugin.estimate(ctx(prompt_chars=40, dialect="openai.embeddings")) == 10


# Plugins with per-process state of their own refuse several workers on SQLite too.
ALONE = '[plugins]\ndisabled = ["accounts", "credits"]\n'


def test_several_workers_on_memory_state_refuse_to_start(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("LMROUTER_WORKERS", raising=False)
    with pytest.raises(ConfigError) as info:
        gateway(tmp_path, ALONE + "[server]\nworkers = 3\n")
    assert info.value.key == "server.workers"
    assert "3 workers" in info.value.message and "'memory' rate-limit backend" in info.value.message
    assert "lmrouter-redis" in info.value.message
    # `lmrouter serve --workers N` wins over the file
    monkeypatch.setenv("LMROUTER_WORKERS", "1")
    gateway(tmp_path, ALONE + "[server]\nworkers = 3\n")
    monkeypatch.setenv("LMROUTER_WORKERS", "2")
    with pytest.raises(ConfigError):
        gateway(tmp_path, ALONE)
    # with the plugin disabled nothing is refused on its account (the core's invalid-key
    # counts are per process too without Redis: off here)
    monkeypatch.delenv("LMROUTER_WORKERS")
    gateway(
        tmp_path,
        ALONE.replace('"credits"', '"credits", "ratelimit"')
        + "[server]\nworkers = 3\nauth_failures_per_minute = 0\n",
    )


def test_unknown_backend_is_named(tmp_path: Path) -> None:
    with pytest.raises(ConfigError) as info:
        gateway(tmp_path, '[ratelimit]\nbackend = "no-such-backend"\n')
    assert info.value.key == "ratelimit.backend"
    assert "installed: memory" in info.value.message


@pytest.mark.parametrize(
    ("ns", "text"),
    [
        (0, "0s"),
        (1, "1ms"),  # rounded up: waiting what it says is always enough
        (20_000_000, "20ms"),
        (999_000_001, "1s"),
        (1_000_000_000, "1s"),
        (1_500_000_000, "1.5s"),
        (8_640_000_000, "8.64s"),
        (88_800_000_000, "1m28.8s"),
        (360_000_000_000, "6m0s"),
        (3_600_000_000_000, "1h0m0s"),
    ],
)
def test_durations_read_like_openais(ns: int, text: str) -> None:
    assert duration(ns) == text


def test_headers() -> None:
    decision = Decision(True, requests=(60, 59, 1_000_000_000), tokens=(1000, 699, 18_060_000_000))

    def text(headers: list[tuple[bytes, bytes]]) -> dict[str, str]:
        return {k.decode(): v.decode() for k, v in headers}

    assert text(quota_headers(decision)) == {
        "x-ratelimit-limit-requests": "60",
        "x-ratelimit-remaining-requests": "59",
        "x-ratelimit-reset-requests": "1s",
        "x-ratelimit-limit-tokens": "1000",
        "x-ratelimit-remaining-tokens": "699",
        "x-ratelimit-reset-tokens": "18.06s",
    }
    anthropic = text(quota_headers(decision, anthropic=True))
    assert anthropic["anthropic-ratelimit-tokens-remaining"] == "699"
    assert anthropic["anthropic-ratelimit-requests-reset"].endswith("Z")
    assert text(retry_headers(1)) == {"retry-after": "1", "retry-after-ms": "1"}
    assert text(retry_headers(1_000_000_001)) == {"retry-after": "2", "retry-after-ms": "1001"}


def test_refusal_messages_name_the_limit() -> None:
    limits = Limits(rpm=60, rpm_burst=60, tpm=1000, tpm_burst=1000, max_concurrent=2)
    by_requests = Decision(False, refused_by="requests", retry_after_ns=1_000_000_000)
    assert "(RPM): limit 60" in refusal_message(limits, by_requests)
    assert "try again in 1s" in refusal_message(limits, by_requests)
    by_tokens = Decision(
        False, tokens=(1000, 12, 0), refused_by="tokens", requested=301, retry_after_ns=5
    )
    assert "remaining 12, requested 301" in refusal_message(limits, by_tokens)
    by_slots = Decision(False, refused_by="concurrency", retry_after_ns=1)
    assert "limit 2" in refusal_message(limits, by_slots)
