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

import msgspec

from lmrouter_ratelimit.gcra import MINUTE_NS, Bucket

if TYPE_CHECKING:
    from lmrouter import Gateway


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


class Decision(msgspec.Struct, gc=False):
    """One admission's answer. A msgspec Struct: one is made per request, and its C ``__init__``
    costs half a dataclass's (no cycles: ``gc=False`` keeps it away from the collector too)."""

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
    calls made synchronously: the plugin then uses those and saves a coroutine per request. A
    backend with a service behind it may offer ``async health() -> {name: "ok" or what is
    wrong}`` for ``/health``; when the service is away, ``admit`` raises a 503 ``RouterError``
    (fail closed) and ``settle`` keeps the correction to send later."""

    shared: bool
    """True when every worker and host sees the same state (Redis). The plugin declares the
    state per process where this is False (``lmrouter_process_state``), so several workers are
    refused: each would enforce the limits alone."""

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
    __slots__ = ("active", "limits", "requests", "tokens")

    def __init__(self) -> None:
        self.limits: Limits | None = None  # what the buckets are tuned to
        self.requests: Bucket | None = None
        self.tokens: Bucket | None = None
        self.active = 0

    def tune(self, now: int, limits: Limits) -> None:
        """Buckets for ``limits``: made, retuned (keeping their level) or dropped. Requests
        carry the same Limits object while a key's limits stay the same, so the request path
        compares identity and calls this only on a change."""
        self.requests = _bucket(self.requests, now, limits.rpm, limits.rpm_burst)
        self.tokens = _bucket(self.tokens, now, limits.tpm, limits.tpm_burst)
        self.limits = limits

    def idle(self, now: int) -> bool:
        return (
            self.active == 0
            and (self.requests is None or self.requests.full(now))
            and (self.tokens is None or self.tokens.full(now))
        )


def _bucket(current: Bucket | None, now: int, per_minute: int, capacity: int) -> Bucket | None:
    if not per_minute:
        return None  # unlimited: a limit removed later forgets its level, as it should
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
        if state is None or state.limits is not limits:
            return self._decide(key, limits, tokens, now)
        # The usual case written out, since it runs on every request: every limit has room.
        # This is Bucket.try_take's arithmetic, inlined (a call and its tuple cost as much),
        # and it takes nothing until all limits agree; anything else goes to _decide.
        concurrent = limits.max_concurrent
        if concurrent and state.active >= concurrent:
            return self._decide(key, limits, tokens, now)
        requests: Quota | None = None
        tokens_quota: Quota | None = None
        mark = None
        by_request, by_token = state.requests, state.tokens
        if by_request is not None:
            per_minute = by_request.per_minute
            at = now * per_minute
            tat = by_request.tat
            end = (tat if tat > at else at) + MINUTE_NS
            used = end - at
            room = by_request.capacity * MINUTE_NS
            if used > room:
                return self._decide(key, limits, tokens, now)
        if by_token is not None:
            tokens = tokens if tokens < by_token.capacity else by_token.capacity
            per_minute_t = by_token.per_minute
            at_t = now * per_minute_t
            tat = by_token.tat
            end_t = (tat if tat > at_t else at_t) + tokens * MINUTE_NS
            used_t = end_t - at_t
            room_t = by_token.capacity * MINUTE_NS
            if used_t > room_t:
                return self._decide(key, limits, tokens, now)
            by_token.tat = end_t
            tokens_quota = (
                per_minute_t,
                (room_t - used_t) // MINUTE_NS,
                -(-used_t // per_minute_t),
            )
            mark = (end_t, by_token.shift)
        else:
            tokens = 0
        if by_request is not None:
            by_request.tat = end
            requests = (per_minute, (room - used) // MINUTE_NS, -(-used // per_minute))
        if concurrent:
            state.active += 1
        return Decision(True, requests, tokens_quota, tokens, mark, concurrent > 0)

    def _decide(self, key: str, limits: Limits, tokens: int, now: int) -> Decision:
        """The general case: a new key, new limits, or a limit without room."""
        state = self._keys.get(key)
        if state is None:
            state = self._keys[key] = _KeyState()
        if state.limits is not limits:
            state.tune(now, limits)
        # Take from each bucket as we go and put everything back if one refuses: nothing
        # else runs in between, so restoring the old value is exact.
        wait, refused_by, reserve = 0, None, 0
        requests: Quota | None = None
        tokens_quota: Quota | None = None
        by_request, by_token = state.requests, state.tokens
        if by_request is not None:
            before_requests = by_request.tat
            wait, left, reset = by_request.try_take(now, 1)
            requests = (by_request.per_minute, left, reset)
            if wait:
                refused_by = "requests"
        if by_token is not None:
            before_tokens = by_token.tat
            reserve = tokens if tokens < by_token.capacity else by_token.capacity
            token_wait, left, reset = by_token.try_take(now, reserve)
            tokens_quota = (by_token.per_minute, left, reset)
            if token_wait > wait:
                wait, refused_by = token_wait, "tokens"
        concurrent = limits.max_concurrent
        if concurrent and state.active >= concurrent:
            wait = max(wait, CONCURRENCY_RETRY_NS)
            refused_by = refused_by or "concurrency"
        if refused_by is not None:  # put back what was taken; show the state as it stays
            if by_request is not None and refused_by != "requests":
                by_request.tat = before_requests
                requests = (by_request.per_minute, *by_request.try_take(now, 0)[1:])
            if by_token is not None and refused_by != "tokens":
                by_token.tat = before_tokens
                tokens_quota = (by_token.per_minute, *by_token.try_take(now, 0)[1:])
            return Decision(
                False,
                requests,
                tokens_quota,
                refused_by=refused_by,
                retry_after_ns=wait,
                requested=reserve,
            )
        if concurrent:
            state.active += 1
        mark = None if by_token is None else (by_token.tat, by_token.shift)
        return Decision(True, requests, tokens_quota, reserve, mark, concurrent > 0)

    def settle_now(self, key: str, limits: Limits, decision: Decision, used: int) -> None:
        delta = used - decision.reserved if limits.tpm else 0
        state = self._keys.get(key)
        if state is None:  # forgotten: its buckets were full again, nothing was held
            if delta <= 0:
                return  # a refund to a full bucket changes nothing
            state = self._keys[key] = _KeyState()
        if delta:
            now = self._clock()
            if state.limits is not limits:
                state.tune(now, limits)
            by_token = state.tokens
            if by_token is not None:
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
