"""The real-server fixture itself: the port it serves on is its own from construction on, so
test processes running at once never start two routers on one port."""

from __future__ import annotations

import socket
import sys

import httpx
import pytest

from lmrouter.testing.server import RouterServer

pytestmark = pytest.mark.skipif(sys.platform != "linux", reason="SO_REUSEPORT is Linux's")

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


def test_a_port_taken_meanwhile_is_never_shared() -> None:
    """Another process binds the port after the fixture picked it (as a test running at once
    may): the router refuses the port and the fixture serves on another, alone."""
    server = RouterServer(CONFIG)
    taken = server.port
    with socket.socket() as other:
        other.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)  # as granian binds
        other.bind(("127.0.0.1", taken))
        with server:
            assert server.port != taken
            assert httpx.get(f"{server.url}/health").status_code == 200
