"""What protects the router from callers it does not know yet: a deadline on reading a request
body, and a count of failed API-key attempts per client address.

Both are cheap on the hot path. A body read registers its task in a dict and one sweeper task
cancels the reads that outlast the deadline: an asyncio timer per request costs several
microseconds, a dict entry a fraction of one. The failure count is looked at only while some
address has failed lately.
"""

from __future__ import annotations

import asyncio
import contextlib
import math
import time
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from starlette.types import Message, Receive, Scope

import structlog

from lmrouter.errors import RouterError

if TYPE_CHECKING:
    from lmrouter.sharing import Counters

log = structlog.get_logger("lmrouter.guard")

SWEEP_EVERY = 0.25  # seconds between deadline checks: how late a slow body is cut off at most


def body_timeout(seconds: float) -> RouterError:
    return RouterError(
        408,
        f"The request body did not arrive within {seconds:g} seconds.",
        code="request_timeout",
        headers={"connection": "close"},
    )


class ReadDeadlines:
    """Cancels body reads that outlast ``seconds``. Use :meth:`enter` when a read begins and
    :meth:`leave` when it ends (whatever the outcome); a read cut short raises
    ``CancelledError`` in its task, which :meth:`leave` turns into ``True`` ("it timed out").

    The sweeper cancels a task only while it is registered, and a task is registered only
    around its ``receive()`` calls, so the cancellation always lands in a read, never later."""

    def __init__(self, seconds: float) -> None:
        self.seconds = seconds
        self._due: dict[asyncio.Task[Any], float] = {}
        self._expired: set[asyncio.Task[Any]] = set()
        self._sweeper: asyncio.Task[None] | None = None

    def enter(self, due: float | None = None) -> asyncio.Task[Any] | None:
        """Start timing the current task's read; ``due`` (monotonic) continues an earlier one."""
        if self.seconds <= 0:
            return None
        task = asyncio.current_task()
        assert task is not None
        self._due[task] = due if due is not None else time.monotonic() + self.seconds
        if self._sweeper is None:
            self._sweeper = asyncio.get_running_loop().create_task(self._sweep())
        return task

    def leave(self, task: asyncio.Task[Any] | None) -> bool:
        """Stop timing; True when the deadline passed and the sweeper cancelled the read."""
        if task is None:
            return False
        self._due.pop(task, None)
        if task in self._expired:
            self._expired.discard(task)
            task.uncancel()
            return True
        return False

    async def _sweep(self) -> None:
        # Runs while reads are under way; a quiet router has no task waking up for nothing.
        try:
            while self._due:
                await asyncio.sleep(SWEEP_EVERY)
                now = time.monotonic()
                late = [task for task, due in self._due.items() if due <= now]
                for task in late:
                    del self._due[task]
                    self._expired.add(task)
                    task.cancel()
        finally:
            self._sweeper = None

    def guard(self, receive: Receive) -> Receive:
        """``receive`` with the deadline on the request body (for endpoints that read it
        themselves, like Starlette's): the 408 is raised as a ``RouterError`` from the read."""
        if self.seconds <= 0:
            return receive
        due = time.monotonic() + self.seconds
        done = False

        async def receive_in_time() -> Message:
            nonlocal done
            if done:
                return await receive()
            task = self.enter(due)
            try:
                message = await receive()
            except asyncio.CancelledError:
                if self.leave(task):
                    raise body_timeout(self.seconds) from None
                raise
            self.leave(task)
            if message["type"] != "http.request" or not message.get("more_body"):
                done = True
            return message

        return receive_in_time

    async def close(self) -> None:
        if self._sweeper is not None:
            self._sweeper.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._sweeper


class KeyFailures:
    """Failed API-key attempts per client address, in fixed windows: an address with ``limit``
    failures in the current ``window`` is refused (429) until the window ends. Bounded: past
    ``max_addresses`` the oldest entries go.

    With ``shared`` counters (several processes, :class:`lmrouter.sharing.Counters`), each
    failure is also counted there, off the request path, and the shared count (with its
    window) replaces this process's when it is higher: an address that failed on other hosts
    is refused here from its next failure on. The check itself stays in memory, so a request
    with a good key never waits for the counters; an address gets at most one failure more per
    other process than ``limit``. When the counters are unreachable each process counts alone.
    """

    __slots__ = ("_pending", "_state", "clock", "limit", "max_addresses", "shared", "window")

    def __init__(
        self,
        limit: int,
        *,
        window: float = 60.0,
        max_addresses: int = 10_000,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.limit = limit
        self.window = window
        self.max_addresses = max_addresses
        self.clock = clock
        self._state: dict[str, list[float]] = {}  # address → [failures, window start]
        self.shared: Counters | None = None
        self._pending: set[asyncio.Task[None]] = set()

    def retry_after(self, address: str) -> int:
        """Whole seconds until ``address`` may try a key again; 0 when it may now."""
        if not self._state:  # the usual case: nobody failed lately
            return 0
        entry = self._state.get(address)
        if entry is None:
            return 0
        left = entry[1] + self.window - self.clock()
        if left <= 0:
            del self._state[address]
            return 0
        return math.ceil(left) if entry[0] >= self.limit else 0

    def failed(self, address: str) -> None:
        if self.limit <= 0:
            return
        now = self.clock()
        entry = self._state.get(address)
        if entry is None or now - entry[1] >= self.window:
            self._state.pop(address, None)
            while len(self._state) >= self.max_addresses:
                del self._state[next(iter(self._state))]
            entry = self._state[address] = [0, now]
        entry[0] += 1
        if self.shared is not None:
            task = asyncio.get_running_loop().create_task(self._count(address))
            self._pending.add(task)  # kept until done (the loop holds tasks weakly)
            task.add_done_callback(self._pending.discard)

    async def _count(self, address: str) -> None:
        assert self.shared is not None
        try:
            count, left = await self.shared.add(f"keyfail:{address}", self.window)
        except Exception as exc:  # unreachable: this process keeps counting alone
            log.warning("shared invalid-key counts unreachable", error=str(exc))
            return
        entry = self._state.get(address)
        if entry is not None and count > entry[0]:
            entry[0] = count
            entry[1] = self.clock() + left - self.window  # the shared window's end

    async def close(self) -> None:
        """Wait for the counts under way."""
        if self._pending:
            await asyncio.gather(*self._pending, return_exceptions=True)


def too_many_failures(seconds: int) -> RouterError:
    return RouterError(
        429,
        f"Too many requests with invalid API keys from this address; retry in {seconds} s.",
        code="rate_limit_exceeded",
        headers={"retry-after": str(seconds)},
    )


def client_address(scope: Scope) -> str:
    client = scope.get("client")
    return client[0] if client else "unknown"


class Guard:
    """The router's guard: built once per worker from ``[server]``."""

    def __init__(self, *, body_timeout: float, auth_failures_per_minute: int) -> None:
        self.deadlines = ReadDeadlines(body_timeout)
        self.key_failures = KeyFailures(auth_failures_per_minute)
