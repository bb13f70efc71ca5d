"""The plugin the conformance kit loads into the router it starts (never installed for real).

It registers the adapter under test as provider type ``conformance-subject`` (named by
``LMROUTER_CONFORMANCE_SUBJECT=module:Class``, so an adapter that is not installed, or a
deliberately broken subclass of one, can be checked) and appends every
``lmrouter_request_end`` to ``LMROUTER_CONFORMANCE_RECORD`` as a JSON line.
"""

from __future__ import annotations

import importlib
import json
import os
from typing import Any

import msgspec

from lmrouter import hookimpl

SUBJECT_TYPE = "conformance-subject"


class ConformancePlugin:
    def __init__(self) -> None:
        self.record = os.environ.get("LMROUTER_CONFORMANCE_RECORD", "")
        self.subject = os.environ.get("LMROUTER_CONFORMANCE_SUBJECT", "")

    @hookimpl
    def lmrouter_provider_types(self) -> dict[str, type] | None:
        if not self.subject:
            return None
        module, _, name = self.subject.partition(":")
        return {SUBJECT_TYPE: getattr(importlib.import_module(module), name)}

    @hookimpl
    def lmrouter_request_end(self, ctx: Any, outcome: Any) -> None:
        if not self.record:
            return
        usage = outcome.usage
        line = {
            "request_id": ctx.request_id,
            "status": outcome.status,
            "http_status": outcome.http_status,
            "attempts": [[a.provider, a.status] for a in ctx.attempts],
            "usage": msgspec.to_builtins(usage) if usage else None,
            "cost_pico": outcome.cost_pico,
        }
        with open(self.record, "a") as fh:
            fh.write(json.dumps(line) + "\n")
