"""The hooks: admit (count, reserve, refuse with 429) and request_end (correct, free the slot)."""

from __future__ import annotations

import importlib.metadata
from typing import TYPE_CHECKING, Any

from lmrouter import ConfigError, ProcessState, RouterError, estimate_tokens, hookimpl
from lmrouter_ratelimit.backend import (
    BackendFactory,
    Decision,
    LimiterBackend,
    Limits,
    MemoryBackend,
)
from lmrouter_ratelimit.config import RateLimitSection
from lmrouter_ratelimit.headers import duration, quota_headers, retry_headers

if TYPE_CHECKING:
    from collections.abc import Awaitable, Mapping

    from lmrouter import Config, Gateway, Outcome, Principal, RequestContext

SECTION = "ratelimit"
BACKENDS_GROUP = "lmrouter.ratelimit_backends"
STATE = "ratelimit"  # ctx.state key: (key, limits, decision) of an admitted request
NO_OUTPUT = frozenset({"openai.embeddings"})  # dialects whose answers are not generated tokens
ANTHROPIC = "anthropic.messages"  # also gets anthropic-ratelimit-* headers
_LIMIT_CACHE_MAX = 4096


class RateLimitPlugin:
    api_version = ">=1.5, <2"  # the hook API versions this plugin is written for

    def __init__(self) -> None:
        memory = MemoryBackend()
        self.backend: LimiterBackend = memory
        self._admit_now: Any = memory.admit_now  # the backend's synchronous calls, if any
        self._settle_now: Any = memory.settle_now
        self.section = RateLimitSection()
        self.defaults: Limits | None = None  # None: unlimited, nothing to do per request
        self._cache: dict[tuple[Any, ...], Limits | None] = {}

    @hookimpl
    def lmrouter_config_section(self) -> tuple[str, type]:
        return SECTION, RateLimitSection

    @hookimpl
    def lmrouter_config_loaded(self, config: Config) -> None:
        backend_factory(config)  # an unknown backend is a config mistake

    @hookimpl
    def lmrouter_process_state(self, config: Config) -> list[ProcessState]:
        return process_state(config)

    @hookimpl
    async def lmrouter_startup(self, gateway: Gateway) -> None:
        self.section = gateway.config.section(SECTION)
        self.defaults = self._limits(None, None, None)
        self._cache.clear()
        self.backend = backend_factory(gateway.config)(gateway)
        self._admit_now = getattr(self.backend, "admit_now", None)
        self._settle_now = getattr(self.backend, "settle_now", None)
        await self.backend.start()

    @hookimpl
    async def lmrouter_shutdown(self, gateway: Gateway) -> None:
        await self.backend.close()

    @hookimpl
    def lmrouter_health(self, gateway: Gateway) -> Awaitable[Mapping[str, str]] | None:
        # a backend with a service behind it (Redis) says how it is; memory has nothing to say
        health = getattr(self.backend, "health", None)
        return health() if health is not None else None

    @hookimpl(tryfirst=True)  # before the credit hold: a refused request holds nothing
    def lmrouter_admit(self, ctx: RequestContext) -> Any:
        limits = self.limits_for(ctx.principal)
        if limits is None:
            return None
        principal = ctx.principal
        key = principal.key_id or principal.id
        tokens = self.estimate(ctx) if limits.tpm else 0
        if self._admit_now is not None:  # decided here and now: no coroutine to make and await
            self._apply(ctx, key, limits, self._admit_now(key, limits, tokens))
            return None
        return self._admit(ctx, key, limits, tokens)

    @hookimpl
    def lmrouter_request_end(self, ctx: RequestContext, outcome: Outcome) -> Any:
        held = ctx.state.pop(STATE, None)  # only admitted requests hold anything
        if held is None:
            return None
        key, limits, decision = held
        if not (decision.reserved or decision.slot):
            return None  # requests per minute only: nothing to give back
        used = outcome.usage.total_tokens if outcome.usage is not None else 0
        if self._settle_now is not None:
            self._settle_now(key, limits, decision, used)
            return None
        return self.backend.settle(key, limits, decision, used)

    # -- per request --------------------------------------------------------------------------

    def limits_for(self, principal: Principal) -> Limits | None:
        """The caller's limits: a key's own (``principal.limits``; 0 = unlimited) over the
        ``[ratelimit]`` defaults. None when nothing limits it."""
        own = principal.limits
        if not own:
            return self.defaults
        wanted = (own.get("rpm"), own.get("tpm"), own.get("max_concurrent"))
        try:
            return self._cache[wanted]
        except KeyError:
            if len(self._cache) >= _LIMIT_CACHE_MAX:
                self._cache.clear()
            limits = self._cache[wanted] = self._limits(*wanted)
            return limits

    def _limits(self, rpm: int | None, tpm: int | None, concurrent: int | None) -> Limits | None:
        section = self.section
        rpm = section.rpm if rpm is None else rpm
        tpm = section.tpm if tpm is None else tpm
        concurrent = section.max_concurrent if concurrent is None else concurrent
        limits = Limits(
            rpm=rpm,
            rpm_burst=max(1, int(rpm * section.burst)) if rpm else 0,
            tpm=tpm,
            tpm_burst=max(1, int(tpm * section.burst)) if tpm else 0,
            max_concurrent=concurrent,
        )
        return None if limits.unlimited else limits

    def estimate(self, ctx: RequestContext) -> int:
        """Tokens to reserve: the prompt's estimate plus the most the answer may use."""
        output = 0
        if ctx.dialect not in NO_OUTPUT:
            output = ctx.max_output_tokens or self.section.default_output_tokens
        return estimate_tokens(ctx.prompt_chars) + output

    async def _admit(self, ctx: RequestContext, key: str, limits: Limits, tokens: int) -> None:
        self._apply(ctx, key, limits, await self.backend.admit(key, limits, tokens))

    def _apply(self, ctx: RequestContext, key: str, limits: Limits, decision: Decision) -> None:
        """Headers for the response, whatever it is; a 429 when refused."""
        headers = quota_headers(decision, anthropic=ctx.dialect == ANTHROPIC)
        if not decision.allowed:
            headers += retry_headers(decision.retry_after_ns)
            raise RouterError(
                429,
                refusal_message(limits, decision),
                code="rate_limit_exceeded",
                headers={k.decode(): v.decode() for k, v in headers},
            )
        ctx.state[STATE] = (key, limits, decision)
        ctx.response_headers += headers


def refusal_message(limits: Limits, decision: Decision) -> str:
    wait = duration(decision.retry_after_ns)
    if decision.refused_by == "requests":
        return (
            f"Rate limit reached for requests per minute (RPM): limit {limits.rpm}. "
            f"Please try again in {wait}."
        )
    if decision.refused_by == "tokens":
        remaining = decision.tokens[1] if decision.tokens else 0
        return (
            f"Rate limit reached for tokens per minute (TPM): limit {limits.tpm}, remaining "
            f"{remaining}, requested {decision.requested} (the prompt and its output limit). "
            f"Please try again in {wait}."
        )
    return (
        f"Too many requests at once: limit {limits.max_concurrent}. "
        "Please try again when one of them has finished."
    )


def backend_factory(config: Config) -> BackendFactory:
    """The class (or callable) named by ``[ratelimit] backend``."""
    name = config.section(SECTION).backend
    if name == "memory":
        return MemoryBackend
    found = {ep.name: ep for ep in importlib.metadata.entry_points(group=BACKENDS_GROUP)}
    if name not in found:
        known = ", ".join(sorted({"memory", *found}))
        raise ConfigError(
            f"unknown rate-limit backend {name!r}; installed: {known}",
            path=config.path,
            key=f"{SECTION}.backend",
        )
    factory: BackendFactory = found[name].load()
    return factory


def process_state(config: Config) -> list[ProcessState]:
    """Per-process limit state under several workers would multiply every limit by their
    number (LiteLLM #27736): the backend says whether it is shared (``shared = True``)."""
    factory = backend_factory(config)
    name = config.section(SECTION).backend
    return [
        ProcessState(
            f"the {name!r} rate-limit backend's counters",
            bool(getattr(factory, "shared", False)),
            'install lmrouter-redis and set [ratelimit] backend = "redis" (or disable '
            'rate limits: [plugins] disabled = ["ratelimit"])',
        )
    ]
