"""The dashboard's parts on their own: throttling, password rules, signing, charts, config."""

from __future__ import annotations

import asyncio
import xml.etree.ElementTree as ET
from datetime import date
from pathlib import Path

import msgspec
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from lmrouter.app import create_app
from lmrouter.config import ConfigError
from lmrouter.gateway import Gateway, load
from lmrouter.storage import SQLiteStore
from lmrouter_credits.service import DailyUsage
from lmrouter_dashboard import chart, policy
from lmrouter_dashboard.config import DashboardConfig
from lmrouter_dashboard.sessions import Sessions, signing_key
from lmrouter_dashboard.throttle import Throttle


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def test_throttle_locks_out_after_the_limit_and_doubles() -> None:
    clock = Clock()
    throttle = Throttle(3, window=900, base=30, cap=120, clock=clock)
    for _ in range(2):
        throttle.failed("a")
        assert throttle.retry_after("a") == 0
    throttle.failed("a")
    assert throttle.retry_after("a") == 30
    assert throttle.retry_after("b") == 0  # keys are apart
    clock.now += 30
    assert throttle.retry_after("a") == 0
    throttle.failed("a")  # one more failure after the lock: twice as long
    assert throttle.retry_after("a") == 60
    clock.now += 60
    throttle.failed("a")
    throttle.failed("a")
    assert throttle.retry_after("a") == 120  # capped
    throttle.succeeded("a")
    assert throttle.retry_after("a") == 0
    # failures spread over more than the window are forgiven
    for _ in range(5):
        throttle.failed("slow")
        clock.now += 1000
    assert throttle.retry_after("slow") == 0


@settings(max_examples=200, deadline=None)
@given(st.lists(st.tuples(st.sampled_from("abc"), st.sampled_from([0, 0, 0, 5, 700])), max_size=60))
def test_throttle_locks_a_burst_and_never_beyond_the_cap(events: list[tuple[str, int]]) -> None:
    clock = Clock()
    throttle = Throttle(4, window=600, base=10, cap=300, clock=clock)
    small = Throttle(4, window=600, base=10, cap=300, max_keys=2, clock=clock)
    failed_at: dict[str, list[float]] = {}
    for key, pause in events:
        clock.now += pause
        throttle.failed(key)
        small.failed(key)
        failed_at.setdefault(key, []).append(clock.now)
        wait = throttle.retry_after(key)
        assert 0 <= wait <= 300 and 0 <= small.retry_after(key) <= 300
        assert len(small._state) <= 2  # bounded memory
        if len(failed_at[key]) >= 4 and failed_at[key][-4] == clock.now:
            assert wait > 0  # four failures at one moment: locked


def test_password_rules_are_about_length_not_composition() -> None:
    rule = lambda p, e="ann@example.com": policy.problem(p, e, min_chars=12)  # noqa: E731
    assert rule("all lower case words") is None
    assert rule("ÜNICODE pässwörd ✓✓") is None
    assert "at least 12" in rule("Sh0rt!Pw")
    assert "at most 256" in rule("a" * 100 + "b" * 157)
    assert "e-mail" in rule("ann@example.com")
    assert "e-mail" in rule("ANN@EXAMPLE.COM")
    assert "repeated" in rule("zzzzzzzzzzzzzz")
    assert "common" in rule("Password1234")
    assert "common" in rule("qwertyuiop123")
    assert all(len(p) >= 8 for p in policy.common_passwords())


def test_cookies_and_csrf_tokens_are_signed(tmp_path: Path) -> None:
    sessions = Sessions(None, b"k" * 32, hours=1, operator_keys=[])  # type: ignore[arg-type]
    other = Sessions(None, b"j" * 32, hours=1, operator_keys=[])  # type: ignore[arg-type]
    cookie = sessions.cookie("token123")
    assert sessions.token_of(cookie) == "token123"
    assert other.token_of(cookie) is None  # another secret
    assert sessions.token_of("token124." + cookie.split(".")[1]) is None
    assert sessions.token_of("token123") is None and sessions.token_of(None) is None
    assert sessions.token_of(cookie + ".x") is None
    csrf = sessions.csrf("token123")
    assert sessions.csrf_ok("token123", csrf)
    assert not sessions.csrf_ok("token124", csrf)
    assert not sessions.csrf_ok("token123", "")
    assert not sessions.csrf_ok(None, csrf)
    assert csrf != sessions.sign("cookie", "token123")  # purposes never collide


def test_the_signing_secret_is_configured_derived_or_made_once(tmp_path: Path) -> None:
    async def go() -> None:
        store = SQLiteStore("sqlite:///x", tmp_path / "x.db")
        await store.open()
        await store.execute("CREATE TABLE dashboard_state (id INTEGER PRIMARY KEY, secret TEXT)")
        try:
            own = await signing_key(store, "a dashboard secret!", "an accounts secret")
            derived = await signing_key(store, "", "an accounts secret")
            assert own != derived and len(own) == len(derived) == 32
            assert derived == await signing_key(store, "", "an accounts secret")
            made = await signing_key(store, "", "")
            assert made == await signing_key(store, "", "")  # kept: every worker agrees
            assert made not in (own, derived)
        finally:
            await store.close()

    asyncio.run(go())


def _rows() -> list[DailyUsage]:
    return [
        DailyUsage("2025-03-01", "big", 3, 100, 10, 5 * 10**12, 5 * 10**12),
        DailyUsage("2025-03-01", "small", 1, 100, 10, 10**12, 10**12),
        DailyUsage("2025-03-03", "big", 1, 1000, 0, 2 * 10**12, 2 * 10**12),
        *[
            DailyUsage("2025-03-02", f"m{i}", 1, 1, 1, 10**9 * (9 - i), 10**9 * (9 - i))
            for i in range(8)
        ],
    ]


def test_charts_stack_models_and_fold_the_smallest_into_other() -> None:
    rows = _rows()
    palette, where = chart.series(rows)
    assert [s.name for s in palette[:2]] == ["big", "small"]
    assert len(palette) == len(chart.PALETTE) and palette[-1].name == chart.OTHER
    assert where["m7"] == chart.OTHER and where["big"] == "big"
    days = chart.days_between(date(2025, 3, 1), date(2025, 3, 3))
    assert days == ["2025-03-01", "2025-03-02", "2025-03-03"]
    svg = chart.svg("Spend <&>", days, rows, palette, where, measure="charged_pico")
    tree = ET.fromstring(svg)  # well-formed, names escaped
    ns = "{http://www.w3.org/2000/svg}"
    assert tree.find(f"{ns}title").text == "Spend <&>"
    bars = tree.findall(f"{ns}rect")
    assert len(bars) == 2 + 5 + 1  # day 1: two models; day 2: m0-m3 and "other"; day 3: one
    heights = {b.find(f"{ns}title").text: float(b.get("height")) for b in bars}
    # $6 on day one under a $10 axis: the stack is 60% of the plot
    day_one = heights["2025-03-01 · big: $5.00"] + heights["2025-03-01 · small: $1.00"]
    assert day_one == pytest.approx(0.6 * (chart.HEIGHT - chart.TOP - chart.BOTTOM), abs=0.2)
    tokens = chart.svg("Tokens", days, rows, palette, where, measure="tokens")
    assert "2025-03-03 · big: 1k" in tokens
    empty = chart.svg("Nothing", days, [], [], {}, measure="tokens")
    assert ET.fromstring(empty).findall(f"{ns}rect") == []


def test_money_labels() -> None:
    assert chart.usd_label(0) == "$0"
    assert chart.usd_label(1234 * 10**10) == "$12.34"
    assert chart.usd_label(11 * 10**8) == "$0.0011"
    assert chart.usd_label(5 * 10**6) == "$5.00e-6"


@pytest.mark.parametrize(
    ("table", "message"),
    [
        ({"secret": "short"}, "at least 16"),
        ({"session_hours": 0}, "session_hours"),
        ({"min_password_chars": 6}, "between 8 and 128"),
        ({"terms_url": "ftp://x"}, "http"),
        ({"terms_url": "https://x.example/terms"}, "terms_version"),
        ({"terms_version": "v1"}, "needs `terms_url`"),
        (
            {"terms_url": "https://a.example", "terms_file": "t.txt", "terms_version": "1"},
            "not both",
        ),
        ({"public_url": "example.com"}, "public_url"),
        ({"enabeld": True}, "unknown field"),
    ],
)
def test_config_is_validated_strictly(table: dict[str, object], message: str) -> None:
    with pytest.raises(msgspec.ValidationError, match=message):
        msgspec.convert(table, DashboardConfig, strict=True)


def test_a_missing_terms_file_is_a_config_error(tmp_path: Path) -> None:
    path = tmp_path / "lmrouter.toml"
    path.write_text('[dashboard]\nterms_file = "terms.txt"\nterms_version = "1"\n')
    with pytest.raises(ConfigError, match="terms file"):
        load(path)
    (tmp_path / "terms.txt").write_text("Be kind.")
    config, _ = load(path)
    assert config.section("dashboard").terms_version == "1"


@pytest.mark.parametrize(
    ("extra", "served"),
    [
        ("", True),
        ("[dashboard]\nenabled = false\n", False),
        ('[plugins]\ndisabled = ["credits"]\n', False),
        ('[plugins]\ndisabled = ["dashboard"]\n', False),
    ],
)
def test_pages_are_served_only_when_enabled_with_what_they_need(
    tmp_path: Path, extra: str, served: bool
) -> None:
    path = tmp_path / "lmrouter.toml"
    path.write_text(extra)
    app = create_app(Gateway.from_path(path))
    paths = {getattr(r, "path", "") for r in app.starlette.routes}
    assert ("/dashboard/login" in paths) is served
    assert "/v1/credits" in paths or "credits" in extra
