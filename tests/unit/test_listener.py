"""The socket ``serve`` binds for granian: what accepted connections inherit from it."""

from __future__ import annotations

import socket

from lmrouter import listener


def test_connections_send_small_writes_at_once() -> None:
    """TCP_NODELAY on the listener (accepted sockets inherit it): without it every stream event
    waited for the client's delayed ACK, about 40 ms a stream (found by the benchmark: streams at
    one connection went from ~1,200 to 23 a second)."""
    sock = listener.bind("127.0.0.1", 0)
    try:
        assert sock.getsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY) == 1
        with socket.create_connection(sock.getsockname()):
            accepted, _ = sock.accept()
            with accepted:
                assert accepted.getsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY) == 1
    finally:
        sock.close()
