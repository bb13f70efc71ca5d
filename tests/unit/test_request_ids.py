"""Request ids the router makes: 24 hex digits that sort by time (so that the usage records'
index on them grows at its end), and the caller's own when it is sane."""

from __future__ import annotations

import re
import time

from lmrouter.headers import new_request_id, request_id_of


def test_fresh_ids_are_hex_unique_and_sort_by_time() -> None:
    ids = []
    for _ in range(5):
        ids += [new_request_id() for _ in range(200)]
        time.sleep(0.002)
    assert all(re.fullmatch(rb"[0-9a-f]{24}", i) for i in ids)
    assert len(set(ids)) == len(ids)
    firsts = [ids[n * 200] for n in range(5)]  # one per millisecond step at least
    assert firsts == sorted(firsts)
    assert abs(int(ids[-1][:12], 16) - time.time_ns() // 1_000_000) < 5_000


def test_the_callers_sane_id_is_kept_and_a_bad_one_replaced() -> None:
    assert request_id_of({"headers": [(b"x-request-id", b"trace-42.a:b")]}) == b"trace-42.a:b"
    fresh = request_id_of({"headers": [(b"x-request-id", b"bad id\n")]})
    assert re.fullmatch(rb"[0-9a-f]{24}", fresh)
