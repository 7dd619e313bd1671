"""What a request body may cost: its size (413) and how slowly it may arrive (408)."""

from __future__ import annotations

import asyncio
from typing import Any

from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.types import ASGIApp, Message, Receive, Scope, Send

# After the grace period a body must keep coming at this rate: a slowloris
# sending a byte now and then is dropped, a slow but real upload is not.
BODY_MIN_BYTES_PER_SECOND = 16 * 1024
# Stream metadata (PUT /streams/{sid}) is a small JSON object.
METADATA_LIMIT = 1024 * 1024


class BodyDeadline:
    """ASGI middleware: a request body must arrive within ``grace`` seconds plus
    one second per 16 KiB received; slower, the request gets 408 and the
    connection closes."""

    def __init__(self, app: ASGIApp, grace: float):
        self.app = app
        self.grace = grace

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        deadline = asyncio.get_running_loop().time() + self.grace
        body_done = False

        async def receive_in_time() -> Message:
            nonlocal deadline, body_done
            if body_done:
                return await receive()  # later receives wait for a disconnect, untimed
            try:
                async with asyncio.timeout_at(deadline):
                    message = await receive()
            except TimeoutError:
                raise HTTPException(408, "request body too slow", headers={"Connection": "close"}) from None
            body: Any = message.get("body", b"")
            deadline += len(body) / BODY_MIN_BYTES_PER_SECOND
            body_done = message["type"] != "http.request" or not message.get("more_body", False)
            return message

        await self.app(scope, receive_in_time, send)


async def read_body(request: Request, limit: int) -> bytes:
    """The whole body, refused with 413 past ``limit`` bytes."""
    declared = request.headers.get("content-length")
    if declared and declared.isdigit() and int(declared) > limit:
        raise HTTPException(413, f"body larger than the limit of {limit} bytes")
    chunks = []
    size = 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > limit:
            raise HTTPException(413, f"body larger than the limit of {limit} bytes")
        chunks.append(chunk)
    return b"".join(chunks)
