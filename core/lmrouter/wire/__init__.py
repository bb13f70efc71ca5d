"""Each provider dialect's wire structs, in one home shared by the inbound dialect
(``lmrouter.dialects.*``, internal) and the provider plugin that speaks it upstream: a public
module, so plugins import from here (``from lmrouter.wire import anthropic``) rather than
copying the shapes. Each submodule depends only on :mod:`lmrouter.ir` and
:mod:`lmrouter.usage`."""

from lmrouter.wire import anthropic, gemini, openai

__all__ = ["anthropic", "gemini", "openai"]
