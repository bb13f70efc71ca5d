"""The process ``lmrouter serve`` becomes once the config is valid: granian's supervisor alone.

``serve`` validates the config and loads every plugin first, so that mistakes are printed before
anything listens; then it replaces itself (``exec``, same process id, same signals) with this
module, which imports granian and nothing of the router. Granian forks its workers from here,
and each worker builds the router itself (``lmrouter.app:serve_app``). Without this the
supervisor, which serves no request, would keep every plugin's imports resident for the
server's whole life: tens of megabytes, counted again in each forked worker's RSS.
"""

from __future__ import annotations

import json
import sys
from typing import Any


def main(argv: list[str]) -> int:
    from granian.constants import Interfaces, Loops

    settings = json.loads(argv[0])
    _server_on(settings["fd"])(
        "lmrouter.app:serve_app",
        factory=True,
        address=settings["host"],
        port=settings["port"],
        interface=Interfaces.ASGI,
        workers=settings["workers"],
        loop=Loops.auto,
        log_level=settings["log_level"],
        log_dictconfig=settings["log_config"],
        workers_kill_timeout=settings["workers_kill_timeout"],
    ).serve()
    return 0


def _server_on(fd: int) -> Any:
    """Granian's server class, serving the socket ``serve`` bound (``lmrouter.listener``)
    instead of binding its own with ``SO_REUSEPORT``. Granian takes this path itself where
    it cannot bind per worker; the workers get the socket's descriptor."""
    import socket

    from granian import Granian
    from granian._granian import SocketHolder

    class Server(Granian):  # type: ignore[misc, valid-type]
        def _init_shared_socket(self) -> None:
            self._ssp = None
            # (fd, uds, backlog) at run time in granian 2.8; its stub lists fewer
            self._shd = SocketHolder(fd, False, self.backlog)  # type: ignore[call-arg]
            self._sfd = fd
            sock = socket.socket(fileno=fd)
            sock.set_inheritable(True)
            self._sso = sock  # what granian's process workers receive

    return Server


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
