"""structlog set-up: JSON lines for machines, colour for people; the request id on every line."""

from __future__ import annotations

import logging
import sys
from typing import TextIO, cast

import orjson
import structlog


def configure(level: str = "info", fmt: str = "auto") -> None:
    if fmt == "auto":
        fmt = "console" if sys.stderr.isatty() else "json"
    shared: list[structlog.types.Processor] = [
        structlog.contextvars.merge_contextvars,
        structlog.processors.add_log_level,
        structlog.processors.TimeStamper(fmt="iso", utc=True),
    ]
    if fmt == "json":
        renderer: structlog.types.Processor = structlog.processors.JSONRenderer(
            serializer=lambda obj, **_: orjson.dumps(obj, default=str).decode()
        )
        processors: list[structlog.types.Processor] = [
            *shared,
            structlog.processors.format_exc_info,
            renderer,
        ]
    else:
        processors = [*shared, structlog.dev.ConsoleRenderer(colors=sys.stderr.isatty())]
    structlog.configure(
        processors=processors,
        wrapper_class=structlog.make_filtering_bound_logger(logging.getLevelName(level.upper())),
        logger_factory=structlog.PrintLoggerFactory(cast("TextIO", _Stderr())),
        cache_logger_on_first_use=True,
    )


class _Stderr:
    """Whatever ``sys.stderr`` is when a line is written, not when logging was set up: a test
    runner swaps it per test and closes the old one (structlog would keep writing to that)."""

    def write(self, text: str) -> int:
        return sys.stderr.write(text)

    def flush(self) -> None:
        sys.stderr.flush()
