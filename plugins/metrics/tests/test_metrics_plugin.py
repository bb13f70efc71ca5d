"""The plugin without a server: who may scrape, and what one request_end records."""

from __future__ import annotations

from types import SimpleNamespace
from typing import Any

import pytest
from prometheus_client.parser import text_string_to_metric_families

from lmrouter.context import Attempt, Outcome, Principal
from lmrouter.errors import RouterError
from lmrouter.usage import Usage
from lmrouter_metrics import MetricsPlugin, access


@pytest.mark.parametrize(
    ("principal", "host", "allow_loopback", "status"),
    [
        (None, "127.0.0.1", True, None),
        (None, "::1", True, None),
        (None, "127.8.9.10", True, None),
        (None, "10.0.0.7", True, 401),
        (None, "2001:db8::1", True, 401),
        (None, None, True, 401),
        (None, "127.0.0.1", False, 401),
        (Principal(id="operator:0", kind="operator", is_admin=True), "10.0.0.7", True, None),
        (Principal(id="operator:0", kind="operator", is_admin=True), "10.0.0.7", False, None),
        (Principal(id="user:1", key_id="k"), "10.0.0.7", True, 403),
        (Principal(id="user:1", key_id="k"), "127.0.0.1", True, 403),  # a key sent is judged
    ],
)
def test_who_may_scrape(
    principal: Principal | None, host: str | None, allow_loopback: bool, status: int | None
) -> None:
    if status is None:
        access.check(principal, host, allow_loopback)
        return
    with pytest.raises(RouterError) as info:
        access.check(principal, host, allow_loopback)
    assert info.value.status == status


def test_has_key() -> None:
    assert access.has_key({"authorization": "Bearer x"})
    assert access.has_key({"x-api-key": "x"})
    assert not access.has_key({"authorization": ""})
    assert not access.has_key({})


def ctx(stream: bool = False, **kw: Any) -> Any:
    fields = {
        "model": SimpleNamespace(id="m"),
        "dialect": "openai.chat",
        "stream": stream,
        "billable": True,
        "attempts": [],
        "upstream_s": 0.0,
        "overhead_ms": None,
        "state": {},
    }
    return SimpleNamespace(**{**fields, **kw})


def samples(plugin: MetricsPlugin) -> dict[tuple[str, frozenset[tuple[str, str]]], float]:
    text = plugin.exposition().decode()
    return {
        (s.name, frozenset(s.labels.items())): s.value
        for family in text_string_to_metric_families(text)
        for s in family.samples
    }


def test_a_refused_stream_never_counts_as_active() -> None:
    """Refused before this plugin's admit ran: request_end must not lower the gauge."""
    plugin = MetricsPlugin()
    refused = ctx(stream=True)
    err = RouterError(429, "slow down", code="rate_limit_exceeded")
    plugin.lmrouter_request_end(refused, Outcome("refused", 429, error=err))
    admitted = ctx(stream=True)
    plugin.lmrouter_admit(admitted)
    assert samples(plugin)[("lmrouter_active_streams", frozenset({("model", "m")}))] == 1
    plugin.lmrouter_request_end(admitted, Outcome("client_disconnected", 499))
    got = samples(plugin)
    assert got[("lmrouter_active_streams", frozenset({("model", "m")}))] == 0
    labels = {"model": "m", "provider": "", "route": "", "dialect": "openai.chat"}
    refused_labels = frozenset({**labels, "status": "refused", "code": "429"}.items())
    assert got[("lmrouter_requests_total", refused_labels)] == 1


def test_one_request_end_updates_each_family_once() -> None:
    plugin = MetricsPlugin()
    route = SimpleNamespace(provider="p2", model="up-model")
    done = ctx(
        attempts=[Attempt("p1", "x", 503), Attempt("p2", "up-model", 200)],
        upstream_s=0.25,
        overhead_ms=0.4,
        billable=False,
    )
    usage = Usage(prompt_tokens=100, completion_tokens=20, cached_tokens=30)
    outcome = Outcome("ok", 200, usage=usage, cost_pico=1_500_000, route=route, total_ms=300.0)
    plugin.lmrouter_request_end(done, outcome)
    got = samples(plugin)

    def one(name: str, **labels: str) -> float:
        return got[(name, frozenset(labels.items()))]

    assert one("lmrouter_tokens_total", model="m", provider="p2", type="input") == 100
    assert one("lmrouter_tokens_total", model="m", provider="p2", type="cached") == 30
    assert one("lmrouter_cost_usd_total", model="m", provider="p2", billable="false") == 1.5e-6
    assert one("lmrouter_fallbacks_total", model="m") == 1
    assert one("lmrouter_upstream_seconds_sum", provider="p2") == 0.25
    assert one("lmrouter_overhead_seconds_sum", dialect="openai.chat") == pytest.approx(0.0004)
    assert one("lmrouter_request_duration_seconds_sum", model="m") == pytest.approx(0.3)
    assert one("lmrouter_time_to_first_token_seconds_count", model="m") == 0  # not a stream
