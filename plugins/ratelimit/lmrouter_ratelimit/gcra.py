"""GCRA, the generic cell rate algorithm, in exact integer arithmetic.

A limit of ``per_minute`` units with a ``capacity`` is a bucket that holds at most ``capacity``
units and refills continuously at ``per_minute`` a minute: no windows, so no double burst at a
window's edge. GCRA stores one number per bucket, the *theoretical arrival time* ``tat``: the
moment the bucket will be full again (a ``tat`` in the past means full).

Times are integer nanoseconds scaled by ``per_minute`` ("ticks"): one unit costs exactly
``MINUTE_NS`` ticks and a nanosecond is ``per_minute`` ticks, so 7 requests a minute are as exact
as 60 (no rounding of 60/7 seconds). Waits are rounded up to the next nanosecond, so a caller that
waits what it was told always finds room.

Guarantees (tested with hypothesis): the units taken in any interval of length ``w`` never exceed
``capacity + w * per_minute / 1 minute``, and a reservation corrected down to what was used never
leaves more room than charging the used amount in the first place.
"""

from __future__ import annotations

MINUTE_NS = 60_000_000_000

Mark = tuple[int, int]  # where a take ends, and the bucket's shift then (see Bucket.refund)


class Bucket:
    """One limit's state. ``per_minute`` and ``capacity`` may change between calls
    (:meth:`retune`); the fill level carries over."""

    __slots__ = ("capacity", "per_minute", "shift", "tat")

    def __init__(self, per_minute: int, capacity: int) -> None:
        if per_minute < 1 or capacity < 1:
            raise ValueError("per_minute and capacity must be at least 1")
        self.per_minute = per_minute
        self.capacity = capacity
        self.tat = 0  # ticks; 0 is long past: a new bucket is full
        # How far the ends of earlier takes have moved (earlier by refunds, by rescaling either
        # way) since the bucket was made: a mark minus the shift since it is where it ends now.
        self.shift = 0

    def retune(self, now_ns: int, per_minute: int, capacity: int) -> None:
        """New limits for the same key: the units in use carry over (``tat - now`` in ticks
        counts units times ``MINUTE_NS``, whatever the rate)."""
        if per_minute != self.per_minute:
            moved = now_ns * (per_minute - self.per_minute)
            self.tat = max(self.tat, now_ns * self.per_minute) + moved
            self.shift -= moved
            self.per_minute = per_minute
        self.capacity = capacity

    def wait_ns(self, now_ns: int, units: int) -> int:
        """How long until ``units`` can be taken: 0 when they can be taken now."""
        now = now_ns * self.per_minute
        over = max(self.tat, now) + units * MINUTE_NS - now - self.capacity * MINUTE_NS
        return 0 if over <= 0 else -(-over // self.per_minute)

    def try_take(self, now_ns: int, units: int) -> tuple[int, int, int]:
        """The request path's one call: take ``units`` if they fit. Returns ``(wait, remaining,
        reset_ns)``: ``wait`` 0 when taken (else what :meth:`wait_ns` says, and nothing is
        taken), then :meth:`remaining` and :meth:`reset_ns` after it. Same arithmetic as those,
        inlined: a method call costs as much as the sums."""
        per_minute = self.per_minute
        now = now_ns * per_minute
        tat = self.tat
        after = (tat if tat > now else now) + units * MINUTE_NS
        room = self.capacity * MINUTE_NS
        over = after - now - room
        if over > 0:
            wait = -(-over // per_minute)
        else:
            wait, tat = 0, after
            self.tat = after
        used = tat - now if tat > now else 0
        return wait, (room - used) // MINUTE_NS if used < room else 0, -(-used // per_minute)

    def take(self, now_ns: int, units: int) -> Mark:
        """Take ``units`` (call :meth:`wait_ns` first: ``take`` does not check). Returns the
        mark to pass to :meth:`refund`."""
        self.tat = max(self.tat, now_ns * self.per_minute) + units * MINUTE_NS
        return (self.tat, self.shift)

    def charge(self, now_ns: int, units: int) -> None:
        """Take ``units`` more without asking: usage beyond a reservation becomes debt."""
        self.tat = max(self.tat, now_ns * self.per_minute) + units * MINUTE_NS

    def refund(self, now_ns: int, units: int, mark: Mark) -> int:
        """Give back the last ``units`` of the take that returned ``mark``, as far as they have
        not drained yet. The bucket drains in order, so what a long request reserved long ago
        is partly gone already; giving it back in full would grant that room twice. Refunds
        since the take moved its end earlier: counting all of them (also those of takes after
        it) errs on the side of giving back less. Returns the ticks given back."""
        now = now_ns * self.per_minute
        end, shift_before = mark
        end -= self.shift - shift_before
        back = min(units * MINUTE_NS, max(end - now, 0))
        before = self.tat
        self.tat = max(self.tat - back, now)
        self.shift += before - self.tat
        return back

    def remaining(self, now_ns: int) -> int:
        """Whole units that could be taken now (0 while in debt)."""
        now = now_ns * self.per_minute
        used = max(self.tat, now) - now
        return max(self.capacity * MINUTE_NS - used, 0) // MINUTE_NS

    def reset_ns(self, now_ns: int) -> int:
        """Time until the bucket is full again."""
        now = now_ns * self.per_minute
        return -(-max(self.tat - now, 0) // self.per_minute)

    def full(self, now_ns: int) -> bool:
        """A full bucket is the same as no bucket: it may be forgotten."""
        return self.tat <= now_ns * self.per_minute
