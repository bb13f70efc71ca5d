"""Start granian on the app factory; the config is validated here first so errors show at once."""

from __future__ import annotations

import json
import os
import sys

from lmrouter import __version__, listener, logs
from lmrouter.config import Config


def run(
    config: Config,
    *,
    host: str | None,
    port: int | None,
    workers: int | None,
    dashboard: str | None = None,
    warnings: list[str] | None = None,
) -> int:
    server = config.server
    host = host or server.host
    port = port or server.port
    workers = workers or server.workers
    os.environ["LMROUTER_CONFIG"] = str(config.path)
    try:
        sock = listener.bind(host, port)
    except listener.PortInUse as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    except OSError as exc:  # e.g. an address this machine does not have
        print(f"error: cannot listen on {host}:{port}: {exc.strerror}", file=sys.stderr)
        return 1
    sock.set_inheritable(True)  # kept across the exec below, for the launcher
    print(
        f"lmrouter {__version__}: {len(config.models)} models, {len(config.providers)} providers, "
        f"{workers} worker{'s' if workers != 1 else ''}\n"
        f"listening on http://{host}:{port}  (config: {config.path})"
        + (f"\ndashboard: http://{host}:{port}{dashboard}" if dashboard else ""),
        file=sys.stderr,
        flush=True,
    )
    for warning in warnings or ():
        print(f"warning: {warning}", file=sys.stderr, flush=True)
    if not any(k.strip() for k in config.core.auth.keys):
        print(
            "note: no operator key set; export LMROUTER_ADMIN_KEY=… to get one",
            file=sys.stderr,
            flush=True,
        )
    settings = {
        "host": host,
        "port": port,
        "fd": sock.fileno(),
        "workers": workers,
        "log_level": server.log_level if server.log_level != "warning" else "warn",
        "log_config": logs.granian_config(
            logs.resolved_format(os.environ.get("LMROUTER_LOG_FORMAT", server.log_format))
        ),
        "workers_kill_timeout": int(server.shutdown_timeout),
    }
    # Become the slim supervisor (see lmrouter.launcher): the same process, without the
    # plugins and config loaded above.
    sys.stdout.flush()
    sys.stderr.flush()
    argv = [sys.executable, *_interpreter_options(), "-m", "lmrouter.launcher"]
    # The same import path as this process: run from a zipapp (dist/lmrouter.pyz), the
    # packages live where its bootstrap put them, which a fresh interpreter would not look.
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(p for p in sys.path if p)}
    os.execve(sys.executable, [*argv, json.dumps(settings)], env)
    return 0  # not reached: execv returns only by raising


_FLAGS = {  # sys.flags that a command-line switch sets, kept across the exec
    "dont_write_bytecode": "-B",
    "no_user_site": "-s",
    "ignore_environment": "-E",
    "isolated": "-I",
    "safe_path": "-P",
}


def _interpreter_options() -> list[str]:
    """The running interpreter's switches, ``-X`` options and warning filters, kept across
    the exec."""
    opts = [switch for flag, switch in _FLAGS.items() if getattr(sys.flags, flag, False)]
    opts += ["-O"] * sys.flags.optimize
    opts += [f"-W{w}" for w in sys.warnoptions]
    for name, value in sys._xoptions.items():
        opts.append(f"-X{name}" if value is True else f"-X{name}={value}")
    return opts
