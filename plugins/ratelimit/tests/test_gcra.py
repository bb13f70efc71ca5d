"""GCRA properties: nothing beyond limit + burst in any window, waits that are exactly enough,
refunds that never give back more than was reserved."""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

from lmrouter_ratelimit.gcra import MINUTE_NS, Bucket

rates = st.integers(1, 6000).flatmap(
    lambda per_minute: st.tuples(st.just(per_minute), st.integers(1, per_minute))
)


def gaps(per_minute: int) -> st.SearchStrategy[int]:
    """Pauses around one emission interval, including none at all (a burst)."""
    interval = MINUTE_NS // per_minute
    return st.one_of(st.just(0), st.integers(0, 3 * interval), st.integers(0, MINUTE_NS))


@settings(max_examples=300)
@given(rate=rates, data=st.data())
def test_never_more_than_capacity_plus_rate_in_any_window(
    rate: tuple[int, int], data: st.DataObject
) -> None:
    per_minute, capacity = rate
    bucket = Bucket(per_minute, capacity)
    now = 10 * MINUTE_NS
    taken: list[tuple[int, int]] = []
    for _ in range(data.draw(st.integers(1, 80))):
        now += data.draw(gaps(per_minute))
        units = data.draw(st.integers(1, capacity))
        if bucket.wait_ns(now, units) == 0:
            bucket.take(now, units)
            taken.append((now, units))
        assert 0 <= bucket.remaining(now) <= capacity
    for i, (start, _) in enumerate(taken):
        total = 0
        for end, units in taken[i:]:
            total += units
            # units in [start, end] <= capacity + (end - start) * per_minute / minute, exactly
            assert total * MINUTE_NS <= capacity * MINUTE_NS + (end - start) * per_minute


@settings(max_examples=300)
@given(rate=rates, data=st.data())
def test_a_refusal_says_exactly_how_long_to_wait(
    rate: tuple[int, int], data: st.DataObject
) -> None:
    per_minute, capacity = rate
    bucket = Bucket(per_minute, capacity)
    now = MINUTE_NS
    for _ in range(data.draw(st.integers(0, 40))):  # some history
        now += data.draw(gaps(per_minute))
        units = data.draw(st.integers(1, capacity))
        if bucket.wait_ns(now, units) == 0:
            bucket.take(now, units)
    units = data.draw(st.integers(1, capacity))
    wait = bucket.wait_ns(now, units)
    if wait:
        assert bucket.wait_ns(now + wait - 1, units) > 0, "a moment earlier is too early"
    assert bucket.wait_ns(now + wait, units) == 0, "waiting what it said is enough"


@settings(max_examples=300)
@given(rate=rates, data=st.data())
def test_refunds_never_exceed_reservations(rate: tuple[int, int], data: st.DataObject) -> None:
    """A reservation corrected to what was used never leaves more room than charging the used
    amount in the first place would have (also when requests overlap and end in any order, and
    when one ends long after its reservation drained); the bucket never holds more than its
    capacity."""
    per_minute, capacity = rate
    reserved = Bucket(per_minute, capacity)
    direct = Bucket(per_minute, capacity)
    now = MINUTE_NS
    running: list[tuple[int, int, int]] = []  # (reserved, used, mark)
    for _ in range(data.draw(st.integers(1, 60))):
        now += data.draw(gaps(per_minute))
        if running and data.draw(st.booleans()):
            units, used, mark = running.pop(data.draw(st.integers(0, len(running) - 1)))
            back = reserved.refund(now, units - used, mark)
            assert 0 <= back <= (units - used) * MINUTE_NS
        else:
            units = data.draw(st.integers(0, capacity))
            used = data.draw(st.integers(0, units))
            running.append((units, used, reserved.take(now, units)))
            direct.take(now, used)
        for bucket in (reserved, direct):
            assert 0 <= bucket.remaining(now) <= capacity
        assert reserved.tat >= direct.tat


@given(rate=rates, extra=st.integers(1, 10**6), at=st.integers(0, 10 * MINUTE_NS))
def test_usage_beyond_the_reservation_is_debt(rate: tuple[int, int], extra: int, at: int) -> None:
    per_minute, capacity = rate
    bucket = Bucket(per_minute, capacity)
    bucket.take(at, capacity)
    bucket.charge(at, extra)  # the answer was longer than reserved
    assert bucket.remaining(at) == 0
    # the debt and then one unit drain at per_minute a minute before one more request fits
    assert bucket.wait_ns(at, 1) == -(-(extra + 1) * MINUTE_NS // per_minute)


def test_sixty_a_minute_with_a_full_burst() -> None:
    bucket = Bucket(60, 60)
    admitted = 0
    for _ in range(100):
        if bucket.wait_ns(0, 1) == 0:
            bucket.take(0, 1)
            admitted += 1
    assert admitted == 60
    assert bucket.wait_ns(0, 1) == 1_000_000_000  # one a second after that
    assert bucket.reset_ns(0) == 60 * 1_000_000_000
    assert bucket.remaining(1_000_000_000) == 1


def test_odd_rates_are_exact() -> None:
    """7 a minute is one every 8.571428571… s: a client that waits what it is told is admitted
    on that schedule, never early, and late only by its own rounding up (under 1 ns a wait)."""
    bucket = Bucket(7, 1)
    now = 0
    for _ in range(7000):
        assert bucket.wait_ns(now, 1) == 0
        bucket.take(now, 1)
        now += bucket.wait_ns(now, 1)
        assert bucket.wait_ns(now - 1, 1) > 0
    # the 7000th wait ends 7000 intervals after the first request
    assert 7000 * MINUTE_NS <= now * 7 < 7000 * MINUTE_NS + 7 * 7000


def test_retune_keeps_the_level() -> None:
    bucket = Bucket(60, 60)
    bucket.take(0, 30)
    assert bucket.remaining(0) == 30
    bucket.retune(0, 120, 120)  # the key's limit doubled: 30 used of 120
    assert bucket.remaining(0) == 90
    bucket.retune(0, 10, 10)
    assert bucket.remaining(0) == 0  # 30 used of 10: in debt


@settings(max_examples=300)
@given(rate=rates, data=st.data())
def test_the_request_paths_one_call_agrees_with_the_definitions(
    rate: tuple[int, int], data: st.DataObject
) -> None:
    per_minute, capacity = rate
    fast, reference = Bucket(per_minute, capacity), Bucket(per_minute, capacity)
    now = MINUTE_NS
    for _ in range(data.draw(st.integers(1, 40))):
        now += data.draw(gaps(per_minute))
        units = data.draw(st.integers(0, capacity))
        wait = reference.wait_ns(now, units)
        if wait == 0:
            reference.take(now, units)
        expected = (wait, reference.remaining(now), reference.reset_ns(now))
        assert fast.try_take(now, units) == expected
        assert fast.tat == reference.tat
