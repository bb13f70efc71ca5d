"""``lmrouter``: serve, check, plugins — and whatever subcommands plugins add."""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Sequence

from lmrouter import __version__, plugins
from lmrouter.config import Config, ConfigError, find_config
from lmrouter.gateway import load
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
    config, _ = _load(args)
    return server.run(config, host=args.host, port=args.port, workers=args.workers)


def cmd_check(args: argparse.Namespace) -> int:
    config, pm = _load(args)
    print(f"config: {config.path} is valid")
    enabled = [info for info in pm.infos if info.enabled]
    print(f"plugins ({len(enabled)}): " + ", ".join(info.name for info in enabled))
    print(f"providers ({len(config.providers)}):")
    for name, provider in config.providers.items():
        key = "key set" if provider.api_key else "no key"
        print(f"  {name:<16} type={provider.type:<10} {provider.base_url}  ({key})")
    print(f"models ({len(config.models)}):")
    for model in config.models.values():
        chain = " -> ".join(f"{r.provider}:{r.model}" for r in model.routes)
        print(f"  {model.id:<32} {chain}")
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
        if name in used and not provider.api_key:
            out.append(f"provider {name!r} has no api_key: requests to it rely on BYOK keys")
    out += [f"plugin {i.name!r} failed to load: {i.error}" for i in pm.infos if i.error]
    return out


def cmd_plugins(args: argparse.Namespace) -> int:
    pm = plugins.build(_disabled(args))
    print(f"lmrouter {__version__}, hook API {API_VERSION}")
    for info in pm.infos:
        state = "enabled" if info.enabled else ("FAILED" if info.error else "disabled")
        dist = f"{info.distribution} {info.version or ''}".strip() if info.distribution else "-"
        print(f"{info.name:<16} {state:<9} {dist}")
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

    listing = sub.add_parser("plugins", parents=[common], help="list installed plugins")
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
    except ConfigError as exc:
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
