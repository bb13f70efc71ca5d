"""One user's credits as this process sees them: the lots that can still pay, the holds of
requests in flight, and the charges not yet written. Plain arithmetic, no awaits: a check and
the reservation that follows it can never be split by another request (asyncio runs one thing
at a time, and nothing here yields).

``available = remaining of unexpired lots - holds``. Charges are drawn from the in-memory lots
at once, earliest expiry first, exactly as the batched database write will draw them later; the
charges not yet written are kept so that a reload from the database can replay them.
"""

from __future__ import annotations

from decimal import Decimal

NEVER = 2**63  # µs: a wallet with no lots never needs a refresh for expiry

# A lot in memory: [expires_us, lot_id, remaining_pico]. Lists sort by expiry, then age.
LotState = list[int]


class Wallet:
    __slots__ = ("_total", "_until", "held", "holds", "last_used", "lots", "unflushed")

    def __init__(self, lots: list[LotState], now: int) -> None:
        self.held = 0  # pico-USD reserved by requests in flight
        self.holds = 0  # how many requests hold something
        self.unflushed: dict[int, tuple[int, int]] = {}  # seq → (charge, at_us), not yet written
        self.last_used = now  # µs: the last settlement (or the load), for evicting idle wallets
        self.lots: list[LotState] = []
        self._total = 0  # remaining of the lots in ``lots``
        self._until = NEVER  # when the earliest lot expires: recompute then
        self.reset(lots, now)

    def reset(self, lots: list[LotState], now: int) -> None:
        """New lots read from the database (every lot with something remaining, expired or not,
        as of a moment when the charges still in ``unflushed`` were not written yet)."""
        self.lots = sorted(lots)
        for charge, at in self.unflushed.values():
            self._draw(charge, at)
        self._refresh(now)

    def available(self, now: int) -> int:
        if now >= self._until:
            self._refresh(now)
        return self._total - self.held

    @property
    def balance(self) -> int:
        """Remaining on the unexpired lots (as of the last refresh), holds not deducted."""
        return self._total

    def draw(self, amount: int, at: int) -> int:
        """Take ``amount`` from the unexpired lots, earliest expiry first; returns what was
        taken (less than ``amount`` only when the lots hold less)."""
        if at >= self._until:
            self._refresh(at)
        taken = self._draw(amount, at)
        self._total -= taken
        lots = self.lots
        while lots and lots[0][2] == 0:  # spent lots leave from the front
            lots.pop(0)
        self._until = lots[0][0] if lots else NEVER
        return taken

    def _draw(self, amount: int, at: int) -> int:
        left = amount
        for lot in self.lots:
            if left == 0:
                break
            if lot[0] <= at or lot[2] == 0:  # expired at that moment, or spent
                continue
            take = min(lot[2], left)
            lot[2] -= take
            left -= take
        return amount - left

    def _refresh(self, now: int) -> None:
        self.lots = [lot for lot in self.lots if lot[0] > now and lot[2] > 0]
        self._total = sum(lot[2] for lot in self.lots)
        self._until = self.lots[0][0] if self.lots else NEVER


class Fee:
    """A percentage of a cost, exact: ``Decimal("2.5")`` → cost * 25 // 1000. Rounds down, so the
    fee never exceeds the stated percentage of the list price."""

    __slots__ = ("denominator", "numerator")

    def __init__(self, percent: Decimal) -> None:
        numerator, denominator = percent.as_integer_ratio()
        self.numerator = numerator
        self.denominator = denominator * 100

    def of(self, cost: int) -> int:
        return cost * self.numerator // self.denominator if self.numerator else 0
