"""Reading back what the probe plugin recorded (used by the test suite, not by the router)."""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any


def ends(record: Path, request_id: str, wait: float = 5.0) -> list[dict[str, Any]]:
    """The ``lmrouter_request_end`` records of one request. They land just after the reply, so
    this waits for the first, then a little longer: a second, wrong call would land right
    after it, and exactly-once checks must see it."""
    deadline = time.monotonic() + wait
    while time.monotonic() < deadline:
        if record.exists() and _matching(record, request_id):
            time.sleep(0.2)
            return _matching(record, request_id)
        time.sleep(0.02)
    return []


def _matching(record: Path, request_id: str) -> list[dict[str, Any]]:
    lines = record.read_text().splitlines()
    return [r for r in map(json.loads, lines) if r["request_id"] == request_id]
