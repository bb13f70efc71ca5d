"""structlog set-up: JSON lines for machines, colour for people; the request id on every line."""

from __future__ import annotations

import logging
import sys
from typing import TextIO, cast

import orjson
import structlog


def configure(level: str = "info", fmt: str = "auto") -> None:
    fmt = resolved_format(fmt)
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


def resolved_format(fmt: str) -> str:
    """``auto``: colour for a person at a terminal, JSON lines otherwise."""
    if fmt == "auto":
        return "console" if sys.stderr.isatty() else "json"
    return fmt


def foreign_formatter(fmt: str = "json") -> logging.Formatter:
    """For lines from the standard ``logging`` module (granian's own): the same shape as ours."""
    renderer: structlog.types.Processor = (
        structlog.processors.JSONRenderer(
            serializer=lambda obj, **_: orjson.dumps(obj, default=str).decode()
        )
        if fmt == "json"
        else structlog.dev.ConsoleRenderer(colors=sys.stderr.isatty())
    )
    return structlog.stdlib.ProcessorFormatter(
        processors=[structlog.stdlib.ProcessorFormatter.remove_processors_meta, renderer],
        foreign_pre_chain=[
            structlog.stdlib.add_logger_name,
            structlog.stdlib.add_log_level,
            structlog.processors.TimeStamper(fmt="iso", utc=True),
        ],
    )


def granian_config(fmt: str) -> dict[str, object]:
    """A ``logging.config.dictConfig`` for granian's loggers: its lines rendered like ours, on
    stderr with ours (granian's own default is plain text on stdout)."""
    formatter = {"()": "lmrouter.logs.foreign_formatter", "fmt": fmt}
    handler = {
        "formatter": "lmrouter",
        "class": "logging.StreamHandler",
        "stream": "ext://sys.stderr",
    }
    return {
        "version": 1,
        "disable_existing_loggers": False,
        "formatters": {"lmrouter": formatter},
        "handlers": {"lmrouter": handler},
        "loggers": {
            "_granian": {"handlers": ["lmrouter"], "level": "INFO", "propagate": False},
            "granian.access": {"handlers": ["lmrouter"], "level": "INFO", "propagate": False},
        },
    }


class _Stderr:
    """Whatever ``sys.stderr`` is when a line is written, not when logging was set up: a test
    runner swaps it per test and closes the old one (structlog would keep writing to that)."""

    def write(self, text: str) -> int:
        return sys.stderr.write(text)

    def flush(self) -> None:
        sys.stderr.flush()
