"""The converted path: a provider's stream parser and a dialect's renderer joined into one
:class:`~lmrouter.dialects.StreamRelay`, and the same for whole answers."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from lmrouter import ir
from lmrouter.errors import RouterError
from lmrouter.usage import Usage, estimate_tokens

if TYPE_CHECKING:
    from lmrouter.dialects import Dialect, StreamParser, StreamRenderer
    from lmrouter.money import Rates


class ConvertingRelay:
    __slots__ = ("chars", "dialect", "failed", "finished", "parser", "rates", "renderer", "usage")

    def __init__(
        self, parser: StreamParser, renderer: StreamRenderer, dialect: Dialect, rates: Rates
    ) -> None:
        self.parser = parser
        self.renderer = renderer
        self.dialect = dialect
        self.rates = rates
        self.usage: Usage | None = None
        self.failed = False
        self.finished = False
        self.chars = 0

    def feed(self, chunk: bytes) -> bytes:
        return self._render(self.parser.feed(chunk))

    @property
    def answer(self) -> Any:
        """The final object the renderer assembled, when its dialect makes one."""
        return getattr(self.renderer, "answer", None)

    def close(self) -> bytes:
        out = self._render(self.parser.close())
        if self.complete:
            cost = self.rates.cost(self.usage) if self.usage else 0
            out += self.renderer.finish(self.usage, cost)
        return out

    @property
    def complete(self) -> bool:
        return self.finished and not self.failed

    def estimated_usage(self, prompt_chars: int) -> Usage:
        return Usage(
            prompt_tokens=estimate_tokens(prompt_chars),
            completion_tokens=estimate_tokens(self.chars),
            estimated=True,
        )

    def _render(self, events: list[ir.Event]) -> bytes:
        if not events or self.failed:
            return b""
        keep: list[ir.Event] = []
        out = b""
        for event in events:
            if isinstance(event, ir.UsageUpdate):
                self.usage = event.usage
                continue
            if isinstance(event, ir.TextDelta | ir.ThinkingDelta):
                self.chars += len(event.text)
            elif isinstance(event, ir.ToolCallDelta):
                self.chars += len(event.arguments)
            elif isinstance(event, ir.Finish):
                self.finished = True
            elif isinstance(event, ir.StreamError):
                self.failed = True
                out += self.renderer.render(keep) if keep else b""
                # Nothing after an error reaches the client: the stream is over.
                return out + self.error(
                    RouterError(event.status, event.message, code="upstream_error")
                )
            keep.append(event)
        return out + self.renderer.render(keep) if keep else out

    def error(self, err: RouterError) -> bytes:
        return self.renderer.error(err)


def finish_converted(
    dialect: Dialect, answer: Any, doc: dict[str, Any], rates: Rates
) -> tuple[bytes, Usage | None, int]:
    """A whole converted answer: rendered in the caller's dialect with its cost."""
    usage = answer.usage
    cost = rates.cost(usage) if usage else 0
    assert dialect.render is not None
    return dialect.render(answer, doc, cost), usage, cost
