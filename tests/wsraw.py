"""A raw WebSocket handshake over a socket, to see exactly what the server answers."""

from __future__ import annotations

import base64
import os
import socket


def handshake(
    port: int,
    target: str,
    extra_headers: dict[str, str] | None = None,
    connection: str = "Upgrade",
    version: str = "13",
    raw_header: bytes = b"",
) -> tuple[int, dict[str, str], bytes, socket.socket]:
    """Send an upgrade request (``raw_header``: one more header line, bytes as they
    are); return (status, headers, bytes after the head, socket)."""
    sock = socket.create_connection(("127.0.0.1", port), timeout=5)
    key = base64.b64encode(os.urandom(16)).decode()
    lines = [
        f"GET {target} HTTP/1.1",
        f"Host: 127.0.0.1:{port}",
        "Upgrade: websocket",
        f"Connection: {connection}",
        f"Sec-WebSocket-Key: {key}",
        f"Sec-WebSocket-Version: {version}",
        *(f"{name}: {value}" for name, value in (extra_headers or {}).items()),
    ]
    extra = raw_header + b"\r\n" if raw_header else b""
    sock.sendall(("\r\n".join(lines) + "\r\n").encode() + extra + b"\r\n")
    data = b""
    while b"\r\n\r\n" not in data:
        chunk = sock.recv(65536)
        if not chunk:
            break
        data += chunk
    head, _, rest = data.partition(b"\r\n\r\n")
    status_line, *header_lines = head.decode("latin-1").split("\r\n")
    headers = {}
    for line in header_lines:
        name, _, value = line.partition(":")
        headers[name.strip().lower()] = value.strip()
    return int(status_line.split()[1]), headers, rest, sock


def read_close_frame(sock: socket.socket, already: bytes = b"") -> tuple[int, str]:
    """Read server frames until a close frame; return its code and reason."""
    _, code, reason = read_until_close(sock, already)
    return code, reason


FIN = 0x80
RSV1, RSV2, RSV3 = 0x40, 0x20, 0x10


def masked_frame(opcode: int, payload: bytes, flags: int = FIN) -> bytes:
    """One client frame (clients must mask); ``flags`` are FIN and the RSV bits."""
    import struct

    mask = os.urandom(4)
    body = bytes(byte ^ mask[i % 4] for i, byte in enumerate(payload))
    size = len(payload)
    if size < 126:
        head = struct.pack("!BB", flags | opcode, 0x80 | size)
    elif size < 65536:
        head = struct.pack("!BBH", flags | opcode, 0x80 | 126, size)
    else:
        head = struct.pack("!BBQ", flags | opcode, 0x80 | 127, size)
    return head + mask + body


def read_until_close(sock: socket.socket, already: bytes = b"") -> tuple[list[str], int, str]:
    """Server frames until its close frame: (text messages, close code, close reason)."""
    texts: list[str] = []
    data = already
    while True:
        while len(data) < 2:
            chunk = sock.recv(65536)
            if not chunk:
                raise ConnectionError("closed without a close frame")
            data += chunk
        opcode, length = data[0] & 0x0F, data[1] & 0x7F
        offset = 2
        if length == 126:
            length, offset = int.from_bytes(data[2:4], "big"), 4
        elif length == 127:
            length, offset = int.from_bytes(data[2:10], "big"), 10
        while len(data) < offset + length:
            chunk = sock.recv(65536)
            if not chunk:
                raise ConnectionError("closed mid-frame")
            data += chunk
        payload, data = data[offset : offset + length], data[offset + length :]
        if opcode == 0x1:
            texts.append(payload.decode())
        elif opcode == 0x8:
            return texts, int.from_bytes(payload[:2], "big"), payload[2:].decode()
