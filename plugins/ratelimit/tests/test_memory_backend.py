"""The in-memory backend: all-or-nothing admission, exact concurrency slots, corrections, and
memory that forgets only what no decision depends on."""

from __future__ import annotations

from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st

from lmrouter_ratelimit.backend import Limits, MemoryBackend

SECOND = 1_000_000_000


class Clock:
    def __init__(self) -> None:
        self.now = 1000 * SECOND

    def __call__(self) -> int:
        return self.now


def backend() -> tuple[MemoryBackend, Clock]:
    clock = Clock()
    return MemoryBackend(clock=clock), clock


def test_a_refusal_takes_nothing() -> None:
    memory, _ = backend()
    limits = Limits(rpm=10, rpm_burst=10, tpm=100, tpm_burst=100)
    assert memory.admit_now("k", limits, 80).allowed
    refused = memory.admit_now("k", limits, 80)  # tokens refuse; the request must not count
    assert not refused.allowed and refused.refused_by == "tokens"
    assert refused.requests is not None and refused.requests[1] == 9
    assert refused.tokens is not None and refused.tokens[1] == 20
    assert refused.retry_after_ns == 36 * SECOND  # 60 tokens more at 100 a minute
    ok = memory.admit_now("k", limits, 20)
    assert ok.allowed and ok.requests is not None and ok.requests[1] == 8


def test_the_longest_wait_is_the_one_reported() -> None:
    memory, _ = backend()
    limits = Limits(rpm=1, rpm_burst=1, tpm=6000, tpm_burst=6000)
    assert memory.admit_now("k", limits, 10).allowed
    refused = memory.admit_now("k", limits, 6000)  # requests: 60 s; tokens: 0.1 s
    assert refused.refused_by == "requests"
    assert refused.retry_after_ns == 60 * SECOND


def test_reservation_is_capped_at_the_burst() -> None:
    """A request estimated above the whole allowance waits for a full bucket instead of being
    refused forever; its real usage is charged when it ends."""
    memory, clock = backend()
    limits = Limits(tpm=1000, tpm_burst=1000)
    first = memory.admit_now("k", limits, 50_000)
    assert first.allowed and first.reserved == 1000
    assert first.tokens is not None and first.tokens[1] == 0
    memory.settle_now("k", limits, first, used=1500)  # 500 beyond the whole allowance
    refused = memory.admit_now("k", limits, 1)
    assert not refused.allowed
    # 1500 tokens in use: 501 of them must drain (at 1000 a minute) before 1 more fits
    assert refused.retry_after_ns == -(-501 * 60 * SECOND // 1000)
    clock.now += refused.retry_after_ns
    assert memory.admit_now("k", limits, 1).allowed


def test_correction_gives_back_the_unused_part() -> None:
    memory, _ = backend()
    limits = Limits(tpm=1000, tpm_burst=1000)
    first = memory.admit_now("k", limits, 301)
    assert first.tokens is not None and first.tokens[1] == 699
    memory.settle_now("k", limits, first, used=200)
    second = memory.admit_now("k", limits, 301)
    assert second.tokens is not None and second.tokens[1] == 499  # 1000 - 200 - 301


def test_concurrency_slots_are_freed_exactly_once() -> None:
    memory, _ = backend()
    limits = Limits(max_concurrent=2)
    a = memory.admit_now("k", limits, 0)
    b = memory.admit_now("k", limits, 0)
    assert a.allowed and b.allowed and a.slot and b.slot
    refused = memory.admit_now("k", limits, 0)
    assert not refused.allowed and refused.refused_by == "concurrency"
    assert refused.retry_after_ns > 0
    assert memory.admit_now("other-key", limits, 0).allowed  # keys are independent
    memory.settle_now("k", limits, a, used=0)
    assert memory.admit_now("k", limits, 0).allowed
    assert not memory.admit_now("k", limits, 0).allowed


def test_idle_keys_are_forgotten_and_busy_ones_kept() -> None:
    memory, clock = backend()
    limits = Limits(rpm=60, rpm_burst=60, max_concurrent=5)
    held = memory.admit_now("busy", limits, 0)
    for i in range(100):
        memory.settle_now(f"k{i}", limits, memory.admit_now(f"k{i}", limits, 0), used=0)
    assert len(memory) == 101
    clock.now += 2 * SECOND  # the sweep runs at most every 10 s; buckets refill in 1 s
    memory.admit_now("busy", limits, 0)
    assert len(memory) == 101
    clock.now += 10 * SECOND
    memory.admit_now("late", limits, 0)
    assert len(memory) == 2  # "busy" still holds slots; "late" just arrived
    memory.settle_now("busy", limits, held, used=0)


def test_settling_a_forgotten_key_with_debt_remembers_it() -> None:
    memory, clock = backend()
    limits = Limits(tpm=600, tpm_burst=600)
    decision = memory.admit_now("k", limits, 10)
    clock.now += 20 * SECOND  # drained and swept by the next admission of anyone
    memory.admit_now("someone-else", limits, 0)
    assert len(memory) == 1
    memory.settle_now("k", limits, decision, used=900)  # a long answer: 890 beyond
    assert not memory.admit_now("k", limits, 1).allowed


def test_changed_limits_keep_the_level() -> None:
    memory, _ = backend()
    assert memory.admit_now("k", Limits(rpm=10, rpm_burst=10), 0).allowed
    decision = memory.admit_now("k", Limits(rpm=20, rpm_burst=20), 0)
    assert decision.requests is not None and decision.requests[1] == 18


@settings(max_examples=150)
@given(
    max_concurrent=st.integers(1, 5),
    ops=st.lists(st.tuples(st.booleans(), st.integers(0, 30)), max_size=80),
)
def test_concurrency_never_exceeds_the_limit(
    max_concurrent: int, ops: list[tuple[bool, int]]
) -> None:
    memory, clock = backend()
    limits = Limits(max_concurrent=max_concurrent, tpm=10_000, tpm_burst=10_000)
    running = []
    for start, pick in ops:
        clock.now += SECOND
        if start or not running:
            decision = memory.admit_now("k", limits, 100)
            assert decision.allowed == (len(running) < max_concurrent)
            if decision.allowed:
                running.append(decision)
        else:
            memory.settle_now("k", limits, running.pop(pick % len(running)), used=pick)
    for decision in running:
        memory.settle_now("k", limits, decision, used=0)
    clock.now += 60 * SECOND
    for _ in range(max_concurrent):
        assert memory.admit_now("k", limits, 0).allowed


@settings(max_examples=150)
@given(
    rpm=st.integers(0, 5),
    tpm=st.integers(0, 500),
    max_concurrent=st.integers(0, 3),
    ops=st.lists(
        st.tuples(st.integers(0, 3 * SECOND), st.integers(0, 400), st.integers(0, 600)),
        max_size=40,
    ),
)
def test_a_refusal_never_changes_anything(
    rpm: int, tpm: int, max_concurrent: int, ops: list[tuple[int, int, int]]
) -> None:
    memory, clock = backend()
    limits = Limits(rpm, rpm, tpm, tpm, max_concurrent)
    running = []

    def seen() -> tuple[Any, ...]:
        state = memory._keys.get("k")
        if state is None:
            return ()
        buckets = [
            (b.remaining(clock.now), b.reset_ns(clock.now)) if b else None
            for b in (state.requests, state.tokens)
        ]
        return (*buckets, state.active)

    for gap, tokens, used in ops:
        clock.now += gap
        before = seen()
        decision = memory.admit_now("k", limits, tokens)
        if decision.allowed:
            running.append(decision)
            if len(running) > 1 and used % 2:  # end one of them, maybe using more than reserved
                memory.settle_now("k", limits, running.pop(0), used)
        else:
            assert seen() == before or before == (), decision.refused_by
            assert decision.retry_after_ns > 0


class Reference(MemoryBackend):
    """Every admission through the general path: what the written-out usual case must equal.
    (Sending the general path more than it needs is only slower; a fast path that admits what
    the general one refuses, or answers differently, fails here.)"""

    def admit_now(self, key: str, limits: Limits, tokens: int) -> Any:
        now = self._clock()
        if now >= self._next_sweep:
            self._sweep(now)
        return self._decide(key, limits, tokens, now)


@settings(max_examples=200)
@given(
    limits=st.lists(
        st.builds(
            lambda rpm, tpm, concurrent, burst: Limits(
                rpm, max(1, rpm * burst // 4) if rpm else 0, tpm, tpm, concurrent
            ),
            st.integers(0, 6),
            st.integers(0, 60),
            st.integers(0, 3),
            st.integers(1, 4),
        ),
        min_size=1,
        max_size=3,
    ),
    # Small numbers and whole seconds, so that buckets fill exactly to the brim often.
    ops=st.lists(
        st.tuples(
            st.sampled_from([0, 0, SECOND, 10 * SECOND, 1]),  # time passing
            st.integers(0, 2),  # which limits (a key's limits may change)
            st.integers(0, 70),  # tokens asked for
            st.integers(-1, 80),  # settle the oldest with this many used; -1: not yet
        ),
        max_size=60,
    ),
)
def test_the_fast_path_decides_as_the_general_one(
    limits: list[Limits], ops: list[tuple[int, int, int, int]]
) -> None:
    fast, clock = backend()
    reference = Reference(clock=clock)
    held: list[tuple[Limits, Any, Any]] = []
    for gap, pick, tokens, used in ops:
        clock.now += gap
        chosen = limits[pick % len(limits)]
        mine, theirs = fast.admit_now("k", chosen, tokens), reference.admit_now("k", chosen, tokens)
        assert mine == theirs
        if mine.allowed:
            held.append((chosen, mine, theirs))
        if used >= 0 and held:
            chosen, mine, theirs = held.pop(0)
            fast.settle_now("k", chosen, mine, used)
            reference.settle_now("k", chosen, theirs, used)
