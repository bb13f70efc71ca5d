"""The real-server fixture itself: the port it serves on is its own from construction on, so
test processes running at once never start two routers on one port."""

from __future__ import annotations

import errno
import socket
import sys

import httpx
import pytest

from lmrouter.testing.server import RouterServer

pytestmark = pytest.mark.skipif(sys.platform != "linux", reason="the reservation is Linux's")

CONFIG = '[auth]\nkeys = ["sk-x"]\n'


def bind_error(port: int) -> int:
    """The errno of an ordinary bind to ``port`` (0: it succeeded), as a server makes it:
    ``SO_REUSEADDR``, so that the connections closed a moment ago do not count."""
    with socket.socket() as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind(("127.0.0.1", port))
        except OSError as err:
            return err.errno or -1
    return 0


def test_the_port_is_held_from_construction_to_exit() -> None:
    server = RouterServer(CONFIG)
    # granian binds with SO_REUSEPORT: a port merely picked and released could meanwhile be
    # picked by another process, whose router would then share it with this one
    assert bind_error(server.port) == errno.EADDRINUSE
    with server:
        assert httpx.get(f"{server.url}/health").status_code == 200
        server.stop()
        assert bind_error(server.port) == errno.EADDRINUSE  # still ours between runs
        server.start()  # and the same port serves again
        assert httpx.get(f"{server.url}/health").status_code == 200
    assert bind_error(server.port) == 0  # given back
