"""A REST producer: POST /data/{sid} multipart uploads over one keep-alive
HTTP/1.1 connection, one request at a time. The whole request (head and
body) is built once; every file part is one entry (PROTOCOL.md)."""

from __future__ import annotations

import asyncio
import contextlib
import random
import secrets
import time
import urllib.parse
from typing import Any

import orjson

from bench.plan import ConnectionResult, LoadPlan

MAX_HEAD = 64 * 1024


class HttpError(Exception):
    pass


def multipart_body(boundary: str, parts: list[bytes]) -> bytes:
    chunks = []
    for index, data in enumerate(parts):
        chunks.append(
            f'--{boundary}\r\nContent-Disposition: form-data; name="entries"; filename="entry{index}"\r\n'
            "Content-Type: application/octet-stream\r\n\r\n".encode()
        )
        chunks.append(data)
        chunks.append(b"\r\n")
    chunks.append(f"--{boundary}--\r\n".encode())
    return b"".join(chunks)


def count_ids(body: bytes) -> int | None:
    """How many entry ids an answer lists: a JSON list, or the first list in an object."""
    try:
        answer: Any = orjson.loads(body)
    except orjson.JSONDecodeError:
        return None
    if isinstance(answer, dict):
        answer = next((value for value in answer.values() if isinstance(value, list)), None)
    return len(answer) if isinstance(answer, list) else None


class PostProducer:
    def __init__(self, plan: LoadPlan, sid: str):
        self.plan = plan
        self.sid = sid
        address = urllib.parse.urlsplit(plan.base_url)
        self.host = address.hostname or "127.0.0.1"
        self.port = address.port or 80
        self.tls = address.scheme == "https"
        generator = random.Random(plan.seed)
        parts = [generator.randbytes(plan.entry_size) for _ in range(plan.entries_per_message)]
        boundary = "bench-" + secrets.token_hex(16)
        body = multipart_body(boundary, parts)
        head = (
            f"POST /data/{urllib.parse.quote(sid, safe='')} HTTP/1.1\r\n"
            f"Host: {address.netloc}\r\n"
            f"Authorization: Bearer {plan.token}\r\n"
            f"Content-Type: multipart/form-data; boundary={boundary}\r\n"
            f"Content-Length: {len(body)}\r\n\r\n"
        ).encode()
        self.request = head + body
        self.reader: asyncio.StreamReader | None = None
        self.writer: asyncio.StreamWriter | None = None
        self.requests = 0
        self.confirmed = 0
        self.bad_answers = 0
        self.error: str | None = None

    async def connect(self) -> None:
        self.reader, self.writer = await asyncio.open_connection(
            self.host, self.port, ssl=self.tls or None, limit=MAX_HEAD
        )

    async def _read_answer(self) -> tuple[int, bytes, bool]:
        """(status, body, server closes) of one response."""
        assert self.reader is not None
        head = await self.reader.readuntil(b"\r\n\r\n")
        lines = head.split(b"\r\n")
        status = int(lines[0].split(b" ", 2)[1])
        length: int | None = None
        chunked = closes = False
        for line in lines[1:]:
            name, _, value = line.partition(b":")
            name, value = name.strip().lower(), value.strip().lower()
            if name == b"content-length":
                length = int(value)
            elif name == b"transfer-encoding":
                chunked = b"chunked" in value
            elif name == b"connection":
                closes = b"close" in value
        if chunked:
            body = await self._read_chunked()
        elif length is not None:
            body = await self.reader.readexactly(length)
        else:
            body, closes = await self.reader.read(), True
        return status, body, closes

    async def _read_chunked(self) -> bytes:
        assert self.reader is not None
        chunks: list[bytes] = []
        while True:
            size = int((await self.reader.readuntil(b"\r\n")).split(b";")[0], 16)
            chunk = await self.reader.readexactly(size + 2)
            if size == 0:
                # trailers end with an empty line; chunk already read it when there are none
                return b"".join(chunks)
            chunks.append(chunk[:-2])

    async def send_until(self, stop_at: float) -> None:
        parts = self.plan.entries_per_message
        try:
            while time.monotonic() < stop_at:
                if self.writer is None:
                    await self.connect()
                assert self.writer is not None
                self.writer.write(self.request)
                self.requests += 1
                status, body, closes = await self._read_answer()
                if not 200 <= status < 300:
                    raise HttpError(f"HTTP {status}: {body[:200].decode(errors='replace')}")
                self.confirmed += parts
                if count_ids(body) != parts:
                    self.bad_answers += 1
                if closes:
                    await self.close()
        except (
            HttpError,
            OSError,
            asyncio.IncompleteReadError,
            asyncio.LimitOverrunError,
            ValueError,
        ) as error:
            self.error = f"{type(error).__name__}: {error}"

    async def drain(self, deadline: float) -> None:
        """Nothing is in flight: every request is answered before the next is sent."""

    async def close(self) -> None:
        writer, self.writer, self.reader = self.writer, None, None
        if writer is not None:
            writer.close()
            with contextlib.suppress(OSError):
                await writer.wait_closed()

    def result(self) -> ConnectionResult:
        return ConnectionResult(
            sid=self.sid,
            sent_entries=self.requests * self.plan.entries_per_message,
            confirmed_entries=self.confirmed,
            messages=self.requests,
            bad_confirmations=self.bad_answers,
            error=self.error,
        )
