"""Times in the database: fixed-width ISO-8601 UTC text whose order is time order."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from hypothesis import given
from hypothesis import strategies as st

from lmrouter_credits.clock import check_range, from_iso, to_iso

EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
# from year 1000 to 9999 (four digits), in microseconds since the epoch
LOWEST, HIGHEST = -30_610_224_000 * 10**6, 253_402_300_799 * 10**6 + 999_999
MICROS = st.integers(LOWEST, HIGHEST)


@given(MICROS)
def test_to_iso_is_strftime_and_round_trips(us: int) -> None:
    expected = (EPOCH + timedelta(microseconds=us)).strftime("%Y-%m-%dT%H:%M:%S.%fZ")
    assert to_iso(us) == expected
    assert from_iso(to_iso(us)) == us


@given(MICROS, MICROS)
def test_text_order_is_time_order(a: int, b: int) -> None:
    assert (to_iso(a) < to_iso(b)) == (a < b)


def test_input_without_a_zone_is_utc_and_zones_are_honoured() -> None:
    assert from_iso("2025-01-01") == from_iso("2025-01-01T00:00:00Z")
    assert from_iso("2025-01-01T02:00:00+02:00") == from_iso("2025-01-01T00:00:00")
    with pytest.raises(ValueError, match="not an ISO-8601"):
        from_iso("next tuesday")


def test_lot_dates_stay_in_range() -> None:
    assert check_range(from_iso("2025-06-01")) == from_iso("2025-06-01")
    for text in ("1969-12-31T23:59:59Z", "9000-01-01"):
        with pytest.raises(ValueError, match="between 1970 and 9000"):
            check_range(from_iso(text))


@given(MICROS, st.lists(st.integers(-2_000_000, 2_000_000), min_size=1, max_size=20))
def test_to_iso_is_strftime_for_times_close_together(start: int, steps: list[int]) -> None:
    """The writer stamps many requests of the same second in a row (to_iso keeps that second's
    text): every one of them, and the ones across a second's edge, still reads right."""
    us = start
    for step in steps:
        us = min(max(us + step, LOWEST), HIGHEST)
        expected = (EPOCH + timedelta(microseconds=us)).strftime("%Y-%m-%dT%H:%M:%S.%fZ")
        assert to_iso(us) == expected
