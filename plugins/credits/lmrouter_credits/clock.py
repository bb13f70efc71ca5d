"""Times: integer microseconds since the epoch in memory, fixed-width ISO-8601 UTC text in the
database (``2025-01-31T09:30:00.000000Z``), so that text order is time order in SQL."""

from __future__ import annotations

import time
from datetime import UTC, datetime, timedelta

_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_MICRO = timedelta(microseconds=1)
DAY_US = 86_400_000_000


def now_us() -> int:
    return time.time_ns() // 1000


def to_iso(us: int) -> str:
    """What ``strftime("%Y-%m-%dT%H:%M:%S.%fZ")`` gives, in a fraction of its time (the batch
    writer stamps every request): the date part is computed once a day, and the text up to the
    second once a second."""
    global _last
    seconds, micros = divmod(us, 1_000_000)
    last = _last  # one tuple, replaced whole: safe to read from any thread
    if last[0] == seconds:
        return f"{last[1]}{micros:06d}Z"
    text = _to_second(seconds)
    _last = (seconds, text)
    return f"{text}{micros:06d}Z"


_last: tuple[int | None, str] = (None, "")


def _to_second(seconds: int) -> str:
    """``YYYY-MM-DDTHH:MM:SS.`` of a time in seconds since the epoch."""
    days, seconds = divmod(seconds, 86_400)
    date = _dates.get(days)
    if date is None:
        if len(_dates) > 1000:
            _dates.clear()
        date = _dates[days] = (_EPOCH + timedelta(days=days)).strftime("%Y-%m-%dT")
    hours, seconds = divmod(seconds, 3600)
    minutes, seconds = divmod(seconds, 60)
    return f"{date}{hours:02d}:{minutes:02d}:{seconds:02d}."


_dates: dict[int, str] = {}


def parse(text: str) -> datetime:
    """An ISO-8601 date or time; one without a zone is taken as UTC. Raises ``ValueError``
    naming the text when it is not one."""
    try:
        value = datetime.fromisoformat(text.strip())
    except ValueError:
        raise ValueError(f"{text!r} is not an ISO-8601 date or time") from None
    return value if value.tzinfo else value.replace(tzinfo=UTC)


_FIRST = 0  # 1970-01-01
_LAST = 221_845_392_000_000_000  # 9000-01-01: room for any expiry after it


def check_range(us: int) -> int:
    """Lot dates between 1970 and 9000, so that every stored time has four-digit years."""
    if not _FIRST <= us < _LAST:
        raise ValueError("a credit lot's date must be between 1970 and 9000")
    return us


def from_iso(text: str) -> int:
    return from_datetime(parse(text))


def from_datetime(value: datetime) -> int:
    """Microseconds of a datetime; a naive one is taken as UTC."""
    if value.tzinfo is None:
        value = value.replace(tzinfo=UTC)
    return (value - _EPOCH) // _MICRO
