"""A pull client for the tests: the `websockets` client (as ptgctl uses it) and
the step format of PROTOCOL.md, "WebSocket pull"."""

from __future__ import annotations

import asyncio
import json
import socket
import uuid
from typing import Any
from urllib.parse import quote, urlencode, urlsplit

import websockets
from websockets.asyncio.client import ClientConnection

Entry = tuple[str, str, bytes]


def new_sid(prefix: str = "pull") -> str:
    return f"{prefix}-{uuid.uuid4().hex[:8]}"


def pull_url(ws_url: str, token: str, sids: str | list[str], **params: Any) -> str:
    segment = "+".join(quote(sid, safe="") for sid in ([sids] if isinstance(sids, str) else sids))
    query = urlencode({"token": token, **{k: v for k, v in params.items() if v is not None}})
    return f"{ws_url}/data/{segment}/pull?{query}"


async def connect(ws_url: str, token: str, sids: str | list[str], **params: Any) -> ClientConnection:
    return await websockets.connect(pull_url(ws_url, token, sids, **params), max_size=2**26)


async def connect_slow(ws_url: str, token: str, sids: str | list[str], **params: Any) -> ClientConnection:
    """A client that keeps one message and a small kernel buffer: left unread, it
    holds back the server within a few hundred KiB, not the megabytes loopback
    autotuning would otherwise take in."""
    where = urlsplit(ws_url)
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 64 * 1024)
    sock.setblocking(False)
    await asyncio.get_running_loop().sock_connect(sock, (where.hostname, where.port))
    return await websockets.connect(
        pull_url(ws_url, token, sids, **params), sock=sock, max_size=2**26, max_queue=1
    )


def unpack(header: str | bytes, body: bytes) -> list[Entry]:
    """(sid, entry_id, payload) per entry, as ptgctl does it (start offsets)."""
    assert isinstance(header, str), "a step starts with a text message"
    assert header.isascii()
    items = json.loads(header)
    starts = [item[2] for item in items]
    ends = [*starts[1:], len(body)] if starts else []
    return [(item[0], item[1], body[a:b]) for item, a, b in zip(items, starts, ends, strict=True)]


async def step(ws: ClientConnection, timeout: float = 5.0) -> list[Entry]:
    header = await asyncio.wait_for(ws.recv(), timeout)
    body = await asyncio.wait_for(ws.recv(), timeout)
    assert isinstance(body, bytes), "a step's entries come as one binary message"
    return unpack(header, body)


async def nothing_within(ws: ClientConnection, seconds: float) -> bool:
    try:
        await asyncio.wait_for(ws.recv(), seconds)
    except TimeoutError:
        return True
    return False


async def collect(ws: ClientConnection, n: int, timeout: float = 10.0) -> list[Entry]:
    """Steps until ``n`` entries came."""
    got: list[Entry] = []
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while len(got) < n:
        got += await step(ws, max(0.01, deadline - loop.time()))
    return got
