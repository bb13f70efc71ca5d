"""``lmrouter init``: a starter config for the providers whose keys are in the environment.

The config is written, then loaded like any other before anything is said, so what ``init``
writes always passes ``lmrouter check``. Providers and tables are offered only when an installed
plugin serves them (the table below is data: adding a provider is a row)."""

from __future__ import annotations

import os
import secrets
from dataclasses import dataclass
from pathlib import Path

from lmrouter.config import ConfigError


@dataclass(frozen=True)
class Starter:
    env: str  # the environment variable holding the provider's key
    name: str
    type: str  # the adapter type a provider plugin must supply
    base_url: str
    models: tuple[tuple[str, str, str], ...]  # (upstream model, max output tokens, price table)


STARTERS = (
    Starter(
        "OPENAI_API_KEY",
        "openai",
        "openai",
        "https://api.openai.com/v1",
        (
            ("gpt-4o-mini", "16384", "{ input = 0.15, output = 0.60, cache_read = 0.075 }"),
            ("gpt-4o", "16384", "{ input = 2.50, output = 10.00, cache_read = 1.25 }"),
        ),
    ),
    Starter(
        "ANTHROPIC_API_KEY",
        "anthropic",
        "anthropic",
        "https://api.anthropic.com",
        (
            (
                "claude-3-5-haiku-latest",
                "8192",
                "{ input = 0.80, output = 4.00, cache_read = 0.08, cache_write = 1.00 }",
            ),
            (
                "claude-sonnet-4-0",
                "16384",
                "{ input = 3.00, output = 15.00, cache_read = 0.30, cache_write = 3.75 }",
            ),
        ),
    ),
    Starter(
        "GEMINI_API_KEY",
        "google",
        "google",
        "https://generativelanguage.googleapis.com",
        (
            ("gemini-2.0-flash", "8192", "{ input = 0.10, output = 0.40, cache_read = 0.025 }"),
            ("gemini-2.5-flash", "65536", "{ input = 0.30, output = 2.50, cache_read = 0.075 }"),
        ),
    ),
)


def render(chosen: list[Starter], *, operator_key: str, sections: set[str], secret: str) -> str:
    lines = [
        "# LMRouter config written by `lmrouter init`. Every key: config/example.toml in the",
        "# repository. It holds the operator key and a secret: keep it private (mode 0600).",
        "",
        "[server]",
        'host = "127.0.0.1"',
        "port = 8080",
        "",
        "[storage]",
        'url = "sqlite:///lmrouter.db"          # relative to this file',
        "",
        "[auth]",
        f'keys = ["{operator_key}"]   # the operator key: admin access, spends no credits',
        "",
    ]
    if "accounts" in sections:
        lines += [
            "[accounts]",
            f'secret = "{secret}"   # encrypts users\' own provider keys (BYOK)',
            "",
        ]
    if "credits" in sections:
        lines += ["[credits]", "expire_after_days = 365", "signup_grant_usd = 0", ""]
    for starter in chosen:
        lines += [
            f"[providers.{starter.name}]",
            f'type = "{starter.type}"',
            f'base_url = "{starter.base_url}"',
            f'api_key = "${{{starter.env}:-}}"    # read from the environment at start',
            "",
        ]
    for starter in chosen:
        for model, max_tokens, price in starter.models:
            lines += [
                "[[models]]",
                f'id = "{starter.name}/{model}"',
                f"max_output_tokens = {max_tokens}",
                "  [[models.routes]]",
                f'  provider = "{starter.name}"',
                f'  model = "{model}"',
                f"  price = {price}   # USD per 1M tokens",
                "",
            ]
    return "\n".join(lines)


def write(
    path: Path, *, force: bool, provider_types: set[str], sections: set[str]
) -> tuple[list[Starter], str]:
    """Write the starter config to ``path`` (0600); the providers chosen and the operator key."""
    if path.exists() and not force:
        raise ConfigError("exists already: nothing written (--force replaces it)", path=path)
    usable = [s for s in STARTERS if s.type in provider_types]
    chosen = [s for s in usable if os.environ.get(s.env)] or usable[:1]
    operator_key = "sk-lmr-op-" + secrets.token_urlsafe(24)
    text = render(
        chosen, operator_key=operator_key, sections=sections, secret=secrets.token_urlsafe(32)
    )
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w", encoding="utf-8") as file:
        file.write(text)
    os.chmod(path, 0o600)  # also when --force replaced a file that had other permissions
    return chosen, operator_key
