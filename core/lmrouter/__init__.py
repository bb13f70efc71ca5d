"""LMRouter: a self-hostable LLM API router."""

from importlib.metadata import PackageNotFoundError, version

try:
    __version__ = version("lmrouter")
except PackageNotFoundError:  # running from a source tree that was not installed
    __version__ = "0.0.0"

from lmrouter.hookspecs import API_VERSION, hookimpl

__all__ = ["API_VERSION", "__version__", "hookimpl"]
