"""A small push client for the tests, on the `websockets` library (what ptgctl uses)."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field
from urllib.parse import quote, urlencode

import websockets
from websockets.exceptions import ConnectionClosed


@dataclass
class PushResult:
    acks: list[str] = field(default_factory=list)
    close_code: int | None = None
    close_reason: str = ""


def push_url(ws_url: str, segment: str, token: str, **query: object) -> str:
    params = {
        name: str(value).lower() if isinstance(value, bool) else str(value) for name, value in query.items()
    }
    params["token"] = token
    return f"{ws_url}/data/{quote(segment, safe='+*%')}/push?{urlencode(params)}"


async def push(
    url: str,
    messages: list[bytes | str],
    expect_acks: int = 0,
    wait_close: bool = False,
    timeout: float = 20.0,
) -> PushResult:
    """Send ``messages`` in order, read ``expect_acks`` acks (or until the server closes)."""
    result = PushResult()
    async with websockets.connect(url, max_size=None, open_timeout=10) as ws:
        try:
            for message in messages:
                await ws.send(message)
            async with asyncio.timeout(timeout):
                while len(result.acks) < expect_acks or wait_close:
                    reply = await ws.recv()
                    assert isinstance(reply, str), "acks are text messages"
                    result.acks.append(reply)
        except ConnectionClosed:
            pass
        if wait_close:
            await ws.wait_closed()
        if ws.close_code is not None:
            result.close_code = ws.close_code
            result.close_reason = ws.close_reason or ""
    return result
