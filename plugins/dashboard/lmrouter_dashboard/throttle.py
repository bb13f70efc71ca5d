"""Sign-in throttling: after ``limit`` failures within ``window`` seconds a key (an e-mail
address, a client address) is locked out, for ``base`` seconds doubling with each further
failure up to ``cap``. Kept in this process's memory: enough for the embedded single-process
server; with several workers each counts on its own (the limits multiply by the workers).

A check that takes time (a password hash) is counted *before* it runs (:meth:`Throttle.attempt`)
and forgiven when it passes: counting after the await let concurrent guesses all pass the
gate before any was counted. :class:`OneAtATime` keeps one such check per account in flight."""

from __future__ import annotations

import asyncio
import contextlib
import math
import time
from collections.abc import AsyncIterator, Callable


class Throttle:
    def __init__(
        self,
        limit: int,
        *,
        window: float = 900.0,
        base: float = 30.0,
        cap: float = 900.0,
        max_keys: int = 100_000,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.limit = limit
        self.window = window
        self.base = base
        self.cap = cap
        self.max_keys = max_keys
        self.clock = clock
        # key → [failures, first failure at, locked until]
        self._state: dict[str, list[float]] = {}

    def retry_after(self, key: str) -> int:
        """Whole seconds until ``key`` may try again; 0 when it may now."""
        entry = self._state.get(key)
        if entry is None:
            return 0
        now = self.clock()
        if entry[2] > now:
            return math.ceil(entry[2] - now)
        if now - entry[1] > self.window and entry[2] <= now:
            del self._state[key]  # quiet for a whole window: forgiven
        return 0

    def failed(self, key: str) -> None:
        now = self.clock()
        entry = self._state.get(key)
        if entry is None or (now - entry[1] > self.window and entry[2] <= now):
            while len(self._state) >= self.max_keys:  # drop the oldest: a flood of fresh keys
                del self._state[next(iter(self._state))]  # must not grow memory without end
            entry = self._state[key] = [0, now, 0.0]
        entry[0] += 1
        over = entry[0] - self.limit
        if over >= 0:
            entry[2] = now + min(self.cap, self.base * 2 ** min(over, 30))

    def succeeded(self, key: str) -> None:
        self._state.pop(key, None)

    def attempt(self, key: str) -> int:
        """Count an attempt as a failure before checking it: the seconds to wait when ``key`` is
        locked out (nothing counted), else 0. Call :meth:`succeeded` or :meth:`forgive` when
        the check passes."""
        wait = self.retry_after(key)
        if not wait:
            self.failed(key)
        return wait

    def forgive(self, key: str) -> None:
        """Take back one counted attempt (it passed), leaving the other failures counted."""
        entry = self._state.get(key)
        if entry is None:
            return
        entry[0] -= 1
        if entry[0] <= 0:
            del self._state[key]
        elif entry[0] < self.limit:
            entry[2] = 0.0


class OneAtATime:
    """One holder per key at a time (a password check per account): the others wait their turn.
    An entry lives only while someone holds or waits for it."""

    def __init__(self) -> None:
        self._locks: dict[str, tuple[asyncio.Lock, list[int]]] = {}

    @contextlib.asynccontextmanager
    async def hold(self, key: str) -> AsyncIterator[None]:
        entry = self._locks.get(key)
        if entry is None:
            entry = self._locks[key] = (asyncio.Lock(), [0])
        lock, users = entry
        users[0] += 1
        try:
            async with lock:
                yield
        finally:
            users[0] -= 1
            if not users[0]:
                del self._locks[key]
