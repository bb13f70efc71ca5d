"""LMRouter: a self-hostable LLM API router.

This module is the public plugin API: everything a plugin may use is importable from here
(``from lmrouter import hookimpl, RequestContext, RouterError``), plus the modules
``lmrouter.ir``, ``lmrouter.sse``, ``lmrouter.capabilities``, ``lmrouter.structured`` and
``lmrouter.wire`` (the internal representation of a chat, the SSE codec, what a model can take,
JSON answers by a forced tool, and each dialect's wire structs, for provider adapters) and
``lmrouter.testing`` (fakes, a config builder and a real-server fixture, for plugin tests).
Every other module under ``lmrouter.*`` is internal: it may change in any release. First-party
plugins keep to the same rule; ``tests/unit/test_public_api.py`` checks them.

What is stable follows ``API_VERSION`` (see :mod:`lmrouter.hookspecs`): a name removed from
``__all__`` or changed incompatibly raises its major number.
"""

from importlib.metadata import PackageNotFoundError, version

try:
    __version__ = version("lmrouter")
except PackageNotFoundError:  # running from a source tree that was not installed
    __version__ = "0.0.0"

from lmrouter import capabilities, ir, sse, structured, wire
from lmrouter.auth import require_principal
from lmrouter.config import Config, ConfigError, Model, Route, find_config
from lmrouter.context import Attempt, Detached, Outcome, Principal, RequestContext, Status
from lmrouter.errors import (
    CannotServe,
    CommandError,
    RouterError,
    body_too_large,
    invalid_api_key,
    invalid_request,
    model_not_found,
)
from lmrouter.gateway import Gateway, load
from lmrouter.hookspecs import API_VERSION, hookimpl, hookspec
from lmrouter.money import PICO_PER_USD, Price, Rates, format_usd, parse_usd, usd
from lmrouter.plugins import PluginError, PluginManager
from lmrouter.providers import (
    Provider,
    ProviderConfig,
    UpstreamFailure,
    UpstreamRequest,
    error_text,
    redact,
)
from lmrouter.sharing import ProcessState
from lmrouter.storage import (
    TRANSIENT,
    BatchWriter,
    Row,
    SQLiteStore,
    StorageError,
    Store,
    Tx,
)
from lmrouter.stores import migrate, store_for
from lmrouter.stores import opened as opened_store
from lmrouter.usage import Usage, estimate_tokens, held_usage

# The flat names of the Anthropic and OpenAI wire structs, kept from API 1.3; their home is
# lmrouter.wire.
ANTHROPIC_FINISH_REASONS = wire.anthropic.TO_FINISH
AnthropicWireUsage = wire.anthropic.WireUsage
anthropic_tool_input = wire.anthropic.tool_input
OpenAIWireUsage = wire.openai.WireUsage

__all__ = [
    "ANTHROPIC_FINISH_REASONS",
    "API_VERSION",
    "PICO_PER_USD",
    "TRANSIENT",
    "AnthropicWireUsage",
    "Attempt",
    "BatchWriter",
    "CannotServe",
    "CommandError",
    "Config",
    "ConfigError",
    "Detached",
    "Gateway",
    "Model",
    "OpenAIWireUsage",
    "Outcome",
    "PluginError",
    "PluginManager",
    "Price",
    "Principal",
    "ProcessState",
    "Provider",
    "ProviderConfig",
    "Rates",
    "RequestContext",
    "Route",
    "RouterError",
    "Row",
    "SQLiteStore",
    "Status",
    "StorageError",
    "Store",
    "Tx",
    "UpstreamFailure",
    "UpstreamRequest",
    "Usage",
    "__version__",
    "anthropic_tool_input",
    "body_too_large",
    "capabilities",
    "error_text",
    "estimate_tokens",
    "find_config",
    "format_usd",
    "held_usage",
    "hookimpl",
    "hookspec",
    "invalid_api_key",
    "invalid_request",
    "ir",
    "load",
    "migrate",
    "model_not_found",
    "opened_store",
    "parse_usd",
    "redact",
    "require_principal",
    "sse",
    "store_for",
    "structured",
    "usd",
    "wire",
]
