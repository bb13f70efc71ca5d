"""Where limit state lives: the :class:`LimiterBackend` protocol and the in-memory backend.

The plugin asks a backend two things per request: :meth:`~LimiterBackend.admit` (take one request,
reserve tokens and a concurrency slot, all or nothing) and :meth:`~LimiterBackend.settle` (correct
the reservation to the real token count and free the slot). A backend that keeps its state in
Redis (one Lua script per call, the server's clock) enforces the same limits across workers and
hosts; it registers under the entry-point group ``lmrouter.ratelimit_backends`` and is chosen with
``[ratelimit] backend = "redis"``.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Protocol

from lmrouter_ratelimit.gcra import Bucket

if TYPE_CHECKING:
    from lmrouter.gateway import Gateway


@dataclass(frozen=True, slots=True)
class Limits:
    """One key's limits. 0 means unlimited. ``*_burst``: units that may be used at once
    (at most the per-minute figure); the rest arrive at an even pace."""

    rpm: int = 0
    rpm_burst: int = 0
    tpm: int = 0
    tpm_burst: int = 0
    max_concurrent: int = 0

    @property
    def unlimited(self) -> bool:
        return not (self.rpm or self.tpm or self.max_concurrent)


Quota = tuple[int, int, int]
"""One limit as the response headers show it: ``(per-minute limit, whole units available now,
nanoseconds until fully replenished)``. A plain tuple: one is made per limit per request."""


@dataclass(slots=True)  # not frozen: one is made per request, and frozen doubles __init__
class Decision:
    allowed: bool
    requests: Quota | None = None
    tokens: Quota | None = None
    reserved: int = 0  # tokens reserved (the estimate, capped at the token burst)
    mark: Any = None  # the backend's note of where the reservation sits, for settle
    slot: bool = False  # a concurrency slot is held: settle must free it
    refused_by: str | None = None  # "requests", "tokens" or "concurrency"
    retry_after_ns: int = 0  # when refused: the wait after which it would be admitted
    requested: int = 0  # when refused by tokens: how many were asked for


class LimiterBackend(Protocol):
    """Limit state for every key. Both calls must be atomic per key: ``admit`` takes everything
    it grants or nothing, and two concurrent calls never both take the last unit.

    A backend that decides without I/O may also offer ``admit_now`` and ``settle_now``, the same
    calls made synchronously: the plugin then uses those and saves a coroutine per request."""

    shared: bool
    """True when every worker and host sees the same state (Redis). The plugin refuses to run
    several workers on a backend where this is False: each would enforce the limits alone."""

    async def start(self) -> None: ...

    async def close(self) -> None: ...

    async def admit(self, key: str, limits: Limits, tokens: int) -> Decision:
        """Count one request against ``limits.rpm``, reserve ``tokens`` (capped at
        ``limits.tpm_burst``) and take a slot under ``limits.max_concurrent`` — or refuse and
        take nothing. Only the limits that are non-zero apply."""
        ...

    async def settle(self, key: str, limits: Limits, decision: Decision, used: int) -> None:
        """The admitted request ended having used ``used`` tokens: give back or charge the
        difference to ``decision.reserved``, free ``decision.slot``. Called exactly once."""
        ...


class BackendFactory(Protocol):
    """What ``lmrouter.ratelimit_backends`` entry points name: called with the gateway at
    start-up. Its ``shared`` attribute is read before any worker starts."""

    shared: bool

    def __call__(self, gateway: Gateway) -> LimiterBackend: ...


class _KeyState:
    __slots__ = ("active", "requests", "tokens")

    def __init__(self) -> None:
        self.requests: Bucket | None = None
        self.tokens: Bucket | None = None
        self.active = 0

    def idle(self, now: int) -> bool:
        return (
            self.active == 0
            and (self.requests is None or self.requests.full(now))
            and (self.tokens is None or self.tokens.full(now))
        )


def _bucket(current: Bucket | None, now: int, per_minute: int, capacity: int) -> Bucket:
    if current is None:
        return Bucket(per_minute, capacity)
    if current.per_minute != per_minute or current.capacity != capacity:
        current.retune(now, per_minute, capacity)  # the key's limits changed: keep its level
    return current


# A concurrency refusal has no clock to read: suggest a short wait.
CONCURRENCY_RETRY_NS = 1_000_000_000


class MemoryBackend:
    """State in this process's memory: exact, with no I/O, for one worker.

    Memory stays bounded by the keys active lately: a key whose buckets are full again and that
    has no request running is indistinguishable from a key never seen, so a sweep (at most every
    ``sweep_every`` seconds, on the request path, O(keys held)) forgets it without changing any
    decision.
    """

    shared = False

    def __init__(
        self,
        gateway: Gateway | None = None,
        *,
        clock: Callable[[], int] = time.monotonic_ns,
        sweep_every: float = 10.0,
    ) -> None:
        self._clock = clock
        self._keys: dict[str, _KeyState] = {}
        self._sweep_every = int(sweep_every * 1e9)
        self._next_sweep = 0

    def __len__(self) -> int:
        return len(self._keys)

    async def start(self) -> None:
        return None

    async def close(self) -> None:
        self._keys.clear()

    async def admit(self, key: str, limits: Limits, tokens: int) -> Decision:
        return self.admit_now(key, limits, tokens)

    async def settle(self, key: str, limits: Limits, decision: Decision, used: int) -> None:
        self.settle_now(key, limits, decision, used)

    # The synchronous core of both calls: the event loop never switches inside them, which is
    # what makes them atomic.

    def admit_now(self, key: str, limits: Limits, tokens: int) -> Decision:
        now = self._clock()
        if now >= self._next_sweep:
            self._sweep(now)
        state = self._keys.get(key)
        if state is None:
            state = self._keys[key] = _KeyState()
        # Take from each bucket as we go and put everything back if one refuses: nothing
        # else runs in between, so restoring the old value is exact.
        wait, refused_by, reserve = 0, None, 0
        requests: Quota | None = None
        tokens_quota: Quota | None = None
        rpm, tpm = limits.rpm, limits.tpm
        if rpm:
            by_request = state.requests = _bucket(state.requests, now, rpm, limits.rpm_burst)
            before_requests = by_request.tat
            wait, left, reset = by_request.try_take(now, 1)
            requests = (rpm, left, reset)
            if wait:
                refused_by = "requests"
        if tpm:
            by_token = state.tokens = _bucket(state.tokens, now, tpm, limits.tpm_burst)
            before_tokens = by_token.tat
            reserve = tokens if tokens < limits.tpm_burst else limits.tpm_burst
            token_wait, left, reset = by_token.try_take(now, reserve)
            tokens_quota = (tpm, left, reset)
            if token_wait > wait:
                wait, refused_by = token_wait, "tokens"
        if limits.max_concurrent and state.active >= limits.max_concurrent:
            wait = max(wait, CONCURRENCY_RETRY_NS)
            refused_by = refused_by or "concurrency"
        if refused_by is not None:  # put back what was taken; show the state as it stays
            if rpm and refused_by != "requests":
                by_request.tat = before_requests
                requests = (rpm, *by_request.try_take(now, 0)[1:])
            if tpm and refused_by != "tokens":
                by_token.tat = before_tokens
                tokens_quota = (tpm, *by_token.try_take(now, 0)[1:])
            return Decision(
                False,
                requests,
                tokens_quota,
                refused_by=refused_by,
                retry_after_ns=wait,
                requested=reserve,
            )
        slot = limits.max_concurrent > 0
        if slot:
            state.active += 1
        mark = (by_token.tat, by_token.shift) if tpm else None
        return Decision(True, requests, tokens_quota, reserve, mark, slot)

    def settle_now(self, key: str, limits: Limits, decision: Decision, used: int) -> None:
        delta = used - decision.reserved if limits.tpm else 0
        state = self._keys.get(key)
        if state is None:  # forgotten: its buckets were full again, nothing was held
            if delta <= 0:
                return  # a refund to a full bucket changes nothing
            state = self._keys[key] = _KeyState()
        if delta:
            now = self._clock()
            by_token = state.tokens = _bucket(state.tokens, now, limits.tpm, limits.tpm_burst)
            if delta > 0:
                by_token.charge(now, delta)
            elif decision.mark is not None:
                by_token.refund(now, -delta, decision.mark)
        if decision.slot:
            state.active -= 1

    def _sweep(self, now: int) -> None:
        self._next_sweep = now + self._sweep_every
        idle = [key for key, state in self._keys.items() if state.idle(now)]
        for key in idle:
            del self._keys[key]
