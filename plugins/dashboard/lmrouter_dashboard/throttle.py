"""Sign-in throttling: after ``limit`` failures within ``window`` seconds a key (an e-mail
address, a client address) is locked out, for ``base`` seconds doubling with each further
failure up to ``cap``.

The rule is :class:`Entry` and its pure transitions. :class:`Throttle` keeps entries in this
process's memory (for the rule's tests); :class:`StoredThrottle`, which the dashboard uses,
keeps them in the store, so every worker and every host counts the same failures: each change
is a compare-and-set on the row (read, compute, ``UPDATE … WHERE`` the row is still what was
read, again if another process changed it first), exact on SQLite and PostgreSQL alike without
a lock statement either lacks. Sign-ins are rare next to API requests: a row write each is cheap.

A check that takes time (a password hash) is counted *before* it runs (``attempt``) and forgiven
when it passes: counting after the await let concurrent guesses all pass the gate before any was
counted. :class:`OneAtATime` keeps one such check per account in flight in this process."""

from __future__ import annotations

import asyncio
import contextlib
import math
import time
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, NamedTuple

if TYPE_CHECKING:
    from lmrouter import Store


class Entry(NamedTuple):
    failures: int
    first: float  # when the first failure of this window happened
    locked_until: float


@dataclass(frozen=True)
class Rule:
    limit: int
    window: float = 900.0
    base: float = 30.0
    cap: float = 900.0

    def stale(self, entry: Entry, now: float) -> bool:
        """Quiet for a whole window and not locked: forgiven."""
        return now - entry.first > self.window and entry.locked_until <= now

    def wait(self, entry: Entry | None, now: float) -> int:
        if entry is None or entry.locked_until <= now:
            return 0
        return math.ceil(entry.locked_until - now)

    def failed(self, entry: Entry | None, now: float) -> Entry:
        if entry is None or self.stale(entry, now):
            entry = Entry(0, now, 0.0)
        failures = entry.failures + 1
        over = failures - self.limit
        locked = entry.locked_until
        if over >= 0:
            locked = now + min(self.cap, self.base * 2 ** min(over, 30))
        return Entry(failures, entry.first, locked)

    def forgive(self, entry: Entry) -> Entry | None:
        """One counted attempt taken back (it passed); None when nothing is left."""
        failures = entry.failures - 1
        if failures <= 0:
            return None
        return Entry(failures, entry.first, 0.0 if failures < self.limit else entry.locked_until)

    def expires(self, entry: Entry) -> float:
        """When the entry no longer matters (for pruning stored ones)."""
        return max(entry.first + self.window, entry.locked_until)


class Throttle:
    """The rule on entries in this process's memory, bounded to ``max_keys``."""

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
        self.rule = Rule(limit, window, base, cap)
        self.max_keys = max_keys
        self.clock = clock
        self._state: dict[str, Entry] = {}

    def retry_after(self, key: str) -> int:
        """Whole seconds until ``key`` may try again; 0 when it may now."""
        entry = self._state.get(key)
        if entry is None:
            return 0
        now = self.clock()
        if self.rule.stale(entry, now):
            del self._state[key]
        return self.rule.wait(entry, now)

    def failed(self, key: str) -> None:
        if key not in self._state:
            while len(self._state) >= self.max_keys:  # drop the oldest: a flood of fresh keys
                del self._state[next(iter(self._state))]  # must not grow memory without end
        self._state[key] = self.rule.failed(self._state.get(key), self.clock())

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
        left = self.rule.forgive(entry)
        if left is None:
            del self._state[key]
        else:
            self._state[key] = left


_READ = "SELECT failures, first_at, locked_until FROM dashboard_throttles WHERE key = ?"
_INSERT = (
    "INSERT INTO dashboard_throttles (key, failures, first_at, locked_until, expires_at) "
    "VALUES (?, ?, ?, ?, ?) ON CONFLICT (key) DO NOTHING"
)
_SWAP = (
    "UPDATE dashboard_throttles SET failures = ?, first_at = ?, locked_until = ?, expires_at = ? "
    "WHERE key = ? AND failures = ? AND first_at = ? AND locked_until = ?"
)
_DELETE = (
    "DELETE FROM dashboard_throttles "
    "WHERE key = ? AND failures = ? AND first_at = ? AND locked_until = ?"
)
_PRUNE = "DELETE FROM dashboard_throttles WHERE expires_at < ?"


class StoredThrottle:
    """The rule on entries in the store: one count for every worker and host. ``name`` keeps
    throttles with different rules apart in the one table. Times are wall-clock seconds, which
    every host shares (to within its clock's accuracy)."""

    def __init__(
        self,
        store: Store,
        name: str,
        limit: int,
        *,
        window: float = 900.0,
        base: float = 30.0,
        cap: float = 900.0,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.store = store
        self.name = name
        self.rule = Rule(limit, window, base, cap)
        self.clock = clock

    async def _read(self, key: str) -> Entry | None:
        row = await self.store.fetchone(_READ, (f"{self.name}:{key}",))
        return None if row is None else Entry(int(row[0]), float(row[1]), float(row[2]))

    async def _swap(self, key: str, old: Entry | None, new: Entry | None) -> bool:
        """Replace ``old`` by ``new`` (None: no row) if the row is still ``old``."""
        stored = f"{self.name}:{key}"
        if old is None:
            if new is None:
                return True
            await self.store.execute(_PRUNE, (self.clock(),))  # fresh keys: drop dead ones
            fresh = (stored, *new, self.rule.expires(new))
            return await self.store.execute(_INSERT, fresh) == 1
        if new is None:
            return await self.store.execute(_DELETE, (stored, *old)) == 1
        row = (*new, self.rule.expires(new), stored, *old)
        return await self.store.execute(_SWAP, row) == 1

    async def _change(self, key: str, change: Callable[[Entry | None, float], Entry | None]) -> int:
        """Apply ``change`` atomically (again while another process wins the race); the wait
        the entry imposed before the change, when it refused one (then nothing changes)."""
        while True:
            old = await self._read(key)
            now = self.clock()
            if old is not None and self.rule.stale(old, now):
                if not await self._swap(key, old, None):
                    continue
                old = None
            new = change(old, now)
            if new is old or await self._swap(key, old, new):
                return self.rule.wait(old, now) if new is old else 0

    async def retry_after(self, key: str) -> int:
        """Whole seconds until ``key`` may try again; 0 when it may now."""
        return self.rule.wait(await self._read(key), self.clock())

    async def failed(self, key: str) -> None:
        await self._change(key, self.rule.failed)

    async def attempt(self, key: str) -> int:
        """Count an attempt as a failure before checking it, unless ``key`` is locked out: the
        seconds to wait then (nothing counted), else 0."""

        def count(entry: Entry | None, now: float) -> Entry | None:
            return entry if self.rule.wait(entry, now) else self.rule.failed(entry, now)

        return await self._change(key, count)

    async def forgive(self, key: str) -> None:
        """Take back one counted attempt (it passed), leaving the other failures counted."""
        rule = self.rule
        await self._change(key, lambda entry, now: None if entry is None else rule.forgive(entry))

    async def succeeded(self, key: str) -> None:
        await self._change(key, lambda entry, now: None)


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
