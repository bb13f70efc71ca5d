"""Start granian on the app factory; the config is validated here first so errors show at once."""

from __future__ import annotations

import os
import sys

from lmrouter import __version__
from lmrouter.config import Config


def run(config: Config, *, host: str | None, port: int | None, workers: int | None) -> int:
    from granian import Granian
    from granian.constants import Interfaces, Loops

    server = config.server
    host = host or server.host
    port = port or server.port
    workers = workers or server.workers
    os.environ["LMROUTER_CONFIG"] = str(config.path)
    print(
        f"lmrouter {__version__}: {len(config.models)} models, {len(config.providers)} providers, "
        f"{workers} worker{'s' if workers != 1 else ''}\n"
        f"listening on http://{host}:{port}  (config: {config.path})",
        file=sys.stderr,
        flush=True,
    )
    if not any(k.strip() for k in config.core.auth.keys):
        print(
            "note: no operator key set; export LMROUTER_ADMIN_KEY=… to get one",
            file=sys.stderr,
            flush=True,
        )
    Granian(
        "lmrouter.app:serve_app",
        factory=True,
        address=host,
        port=port,
        interface=Interfaces.ASGI,
        workers=workers,
        loop=Loops.auto,
        log_level=server.log_level if server.log_level != "warning" else "warn",  # type: ignore[arg-type]
        workers_kill_timeout=int(server.shutdown_timeout),
    ).serve()
    return 0
