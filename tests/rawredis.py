"""A plain socket to the tests' Redis, for exchanges byte by byte."""

from __future__ import annotations

import socket
from urllib.parse import urlparse


def redis_socket(url: str) -> socket.socket:
    parsed = urlparse(url)
    if parsed.scheme == "unix":
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        sock.connect(parsed.path)
    else:
        sock = socket.create_connection((parsed.hostname or "127.0.0.1", parsed.port or 6379))
    sock.settimeout(10)
    return sock
