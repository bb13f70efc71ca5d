"""``lmrouter``: serve, check, plugins — and whatever subcommands plugins add."""

from __future__ import annotations

import argparse
import asyncio
import os
import sys
from collections.abc import Sequence
from pathlib import Path

from lmrouter import __version__, plugins, sharing
from lmrouter.config import Config, ConfigError, find_config
from lmrouter.errors import CommandError
from lmrouter.gateway import Gateway, load
from lmrouter.hookspecs import API_VERSION


def _load(args: argparse.Namespace) -> tuple[Config, plugins.PluginManager]:
    return load(find_config(args.config).resolve())


def load_config(args: argparse.Namespace) -> Config:
    """For plugin subcommands: the validated config named by ``--config`` (or the default)."""
    return _load(args)[0]


def cmd_serve(args: argparse.Namespace) -> int:
    from lmrouter import server

    if args.workers:  # plugins must see the real worker count when they check the config
        os.environ["LMROUTER_WORKERS"] = str(args.workers)
    config, pm = _load(args)
    try:
        asyncio.run(_preflight(config, pm))
    except Exception as exc:  # the store or a backend (Redis) unreachable, and the like
        print(f"error: cannot start: {exc}", file=sys.stderr)
        return 1
    return server.run(
        config,
        host=args.host,
        port=args.port,
        workers=args.workers,
        dashboard=_dashboard(config, pm),
        warnings=_warnings(config, pm),  # the same as `check` prints, before anything serves
    )


async def _preflight(config: Config, pm: plugins.PluginManager) -> None:
    """Start and stop the router once here, as each worker will: a store or a backend that
    cannot be reached is one clear error before anything listens (not a traceback per worker),
    and the migrations have run once before the workers start."""
    gateway = Gateway(config, pm)
    await gateway.start()
    await gateway.stop()


def _dashboard(config: Config, pm: plugins.PluginManager) -> str | None:
    """The dashboard's path when an enabled plugin serves one, for the banner. The app is
    built here only to see its routes; the workers build their own."""
    from lmrouter.app import create_app

    try:
        return create_app(Gateway(config, pm)).dashboard
    except Exception:  # a plugin that cannot build its routes here fails in the workers too
        return None


def cmd_check(args: argparse.Namespace) -> int:
    config, pm = _load(args)
    print(f"config: {config.path} is valid")
    enabled = [info for info in pm.infos if info.enabled]
    print(f"plugins ({len(enabled)}): " + ", ".join(info.name for info in enabled))
    print(f"providers ({len(config.providers)}):")
    for name, provider in config.providers.items():
        key = "key set" if provider.api_key else "no key"
        if not provider.api_key and provider.own_credentials():
            key = "credentials of its own"
        print(f"  {name:<16} type={provider.type:<10} {provider.base_url}  ({key})")
    print(f"models ({len(config.models)}):")
    for model in config.models.values():
        chain = " -> ".join(f"{r.provider}:{r.model}" for r in model.routes)
        print(f"  {model.id:<32} {chain}")
    for scale, lacking in (
        ("several workers", sharing.unshared(config, pm)),
        ("several hosts", sharing.unshared(config, pm, hosts=True)),
    ):
        # not warnings: one process on the embedded store is the normal default
        if lacking:
            print(f"{scale}: not possible, these stay in one process or on one host:")
            print("\n".join(f"  {line}" for line in lacking))
        else:
            print(f"{scale}: possible (every per-process piece is shared)")
    warnings = _warnings(config, pm)
    for warning in warnings:
        print(f"warning: {warning}")
    return 0


def _warnings(config: Config, pm: plugins.PluginManager) -> list[str]:
    out = []
    only_operator_keys = len(pm.hook.lmrouter_authenticate.get_hookimpls()) == 1
    if only_operator_keys and not any(k.strip() for k in config.core.auth.keys):
        out.append(
            "no operator key is set and no accounts plugin is enabled: every request "
            "will get 401. Set LMROUTER_ADMIN_KEY or [auth] keys."
        )
    used = {route.provider for model in config.models.values() for route in model.routes}
    out += [
        f"provider {name!r} is configured but no model routes to it"
        for name in sorted(set(config.providers) - used)
    ]
    out += [
        f"model {model.id!r} via {route.provider!r} has no price: it is free"
        for model in config.models.values()
        for route in model.routes
        if not any(route.rates)
    ]
    for name, provider in config.providers.items():
        if name in used and not provider.own_credentials():
            out.append(
                f"provider {name!r} has no api_key: requests to it fail unless the user stored "
                "their own key (BYOK)"
            )
    out += [f"plugin {i.name!r} failed to load: {i.error}" for i in pm.infos if i.error]
    return out


def cmd_init(args: argparse.Namespace) -> int:
    from lmrouter import starter
    from lmrouter.gateway import config_sections, provider_types

    path = Path(args.config or os.environ.get("LMROUTER_CONFIG") or "lmrouter.toml")
    pm = plugins.build([])
    chosen, operator_key = starter.write(
        path,
        force=args.force,
        provider_types=set(provider_types(pm)),
        sections=set(config_sections(pm)),
    )
    config, pm = _load(argparse.Namespace(config=str(path)))  # what check would say
    found = [s.env for s in chosen if os.environ.get(s.env)]
    print(f"wrote {path} (mode 0600: it holds the operator key and a secret)")
    print(f"providers: {', '.join(s.name for s in chosen)}; models: {', '.join(config.models)}")
    if not found:
        names = ", ".join(s.env for s in starter.STARTERS)
        print(f"no provider key in the environment ({names}): export one before serving")
    print(f"operator key: {operator_key}")
    flag = "" if path == Path("lmrouter.toml") else f" --config {path}"
    print("next:")
    print(f"  lmrouter serve{flag}          # serves http://127.0.0.1:8080")
    print(f"  lmrouter users add you@example.com{flag}")
    print(f"  lmrouter keys create you@example.com{flag}")
    print("  then open http://127.0.0.1:8080/ (operator sign-in: the operator key above)")
    return 0


def cmd_plugins(args: argparse.Namespace) -> int:
    pm = plugins.build(_disabled(args))
    print(f"lmrouter {__version__}, hook API {API_VERSION}")
    if args.hooks:
        for line in plugins.describe_order(pm):
            print(line)
        return 0
    from lmrouter import provider_claims

    types = provider_claims.provider_types(pm)
    for info in pm.infos:
        state = "enabled" if info.enabled else ("FAILED" if info.error else "disabled")
        dist = f"{info.distribution} {info.version or ''}".strip() if info.distribution else "-"
        print(f"{info.name:<16} {state:<9} {dist}")
        if info.enabled:
            print(f"{'':<16} hook API: {provider_claims.api_range(pm, info.name)}")
        for type_name, adapter in sorted(types.get(info.name, {}).items()):
            dialects = ", ".join(provider_claims.dialects_of(adapter)) or "none"
            print(f"{'':<16} provider type {type_name!r}: {dialects}")
        if info.hooks:
            print(f"{'':<16} hooks: {', '.join(info.hooks)}")
        if info.error:
            print(f"{'':<16} error: {info.error}")
    return 0


def _disabled(args: argparse.Namespace) -> list[str]:
    """``plugins`` must work even on a broken config, so it only reads ``plugins.disabled``."""
    from lmrouter.config import read_raw

    try:
        raw = read_raw(find_config(args.config))
    except ConfigError:
        return []
    table = raw.get("plugins")
    return list(table.get("disabled", [])) if isinstance(table, dict) else []


def build_parser() -> argparse.ArgumentParser:
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument(
        "--config",
        metavar="PATH",
        help="config file (default: $LMROUTER_CONFIG, ./lmrouter.toml, config/lmrouter.toml)",
    )
    parser = argparse.ArgumentParser(prog="lmrouter", description="LMRouter: one API, many LLMs.")
    parser.add_argument("--version", action="version", version=f"lmrouter {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)

    serve = sub.add_parser("serve", parents=[common], help="run the router")
    serve.add_argument("--host", help="address to bind (default: [server] host)")
    serve.add_argument("--port", type=int, help="port (default: [server] port)")
    serve.add_argument("--workers", type=int, help="worker processes (default: [server] workers)")
    serve.set_defaults(func=cmd_serve)

    check = sub.add_parser("check", parents=[common], help="validate the config and summarise it")
    check.set_defaults(func=cmd_check)

    init = sub.add_parser(
        "init",
        parents=[common],
        help="write a starter config (./lmrouter.toml)",
        description="Write a starter config for the providers whose keys are in the environment "
        "(OPENAI_API_KEY, ANTHROPIC_API_KEY, GEMINI_API_KEY), with a new operator key and "
        "secret, and say what to run next.",
    )
    init.add_argument("--force", action="store_true", help="replace an existing file")
    init.set_defaults(func=cmd_init)

    listing = sub.add_parser("plugins", parents=[common], help="list installed plugins")
    listing.add_argument(
        "--hooks", action="store_true", help="each hook's implementations, in call order"
    )
    listing.set_defaults(func=cmd_plugins)

    from lmrouter import newplugin

    newplugin.add_parser(sub)

    # Plugins add parsers to ``sub``; ``parents=[sub.common]`` gives them the --config flag.
    sub.common = common  # type: ignore[attr-defined]
    try:
        plugins.build(_disabled_from_argv()).hook.lmrouter_cli(subparsers=sub)
    except Exception as exc:  # a broken plugin must not take the core commands down with it
        print(f"warning: a plugin failed to add its commands: {exc!r}", file=sys.stderr)
    return parser


def _disabled_from_argv() -> list[str]:
    argv = sys.argv[1:]
    path = None
    for i, arg in enumerate(argv):
        if arg == "--config" and i + 1 < len(argv):
            path = argv[i + 1]
        elif arg.startswith("--config="):
            path = arg.split("=", 1)[1]
    return _disabled(argparse.Namespace(config=path))


def main(argv: Sequence[str] | None = None) -> int:
    from lmrouter import logs

    logs.configure("warning", "console")  # CLI output is for people; logs go to stderr
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        result = args.func(args)
    except (ConfigError, CommandError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        return 130
    except BrokenPipeError:  # `lmrouter check | head`: the reader left; say nothing more
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 141  # what a shell reports for SIGPIPE
    return int(result or 0)


if __name__ == "__main__":
    sys.exit(main())
