"""The listening socket, bound by ``lmrouter serve`` itself before anything is printed.

Granian binds with ``SO_REUSEPORT`` on Linux (each worker binds on its own), which lets a second
server bind the same port and the kernel then splits connections between the two: two routers on
one port, each answering half the requests. Binding here, once, without ``SO_REUSEPORT``, makes a
taken port an error at start, and the workers share this one socket instead.
"""

from __future__ import annotations

import errno
import socket

BACKLOG = 1024  # granian's default


class PortInUse(Exception):
    def __init__(self, host: str, port: int) -> None:
        where = f"[{host}]:{port}" if ":" in host else f"{host}:{port}"
        super().__init__(f"{where} is already in use")


def bind(host: str, port: int) -> socket.socket:
    """A listening TCP socket on ``host:port`` that no other socket can share. ``SO_REUSEADDR``
    only lets a restarted server reuse the port while old connections linger in TIME_WAIT; on
    Linux it never admits a second listener."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        if family == socket.AF_INET6:
            sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 0)
        # Accepted connections inherit it: without it Nagle's algorithm holds each small stream
        # event back until the client's delayed ACK, about 40 ms a stream (granian sets it on
        # the sockets it binds itself).
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        sock.bind((host, port))
        sock.listen(BACKLOG)
    except OSError as exc:
        sock.close()
        if exc.errno == errno.EADDRINUSE:
            raise PortInUse(host, port) from None
        raise
    return sock
