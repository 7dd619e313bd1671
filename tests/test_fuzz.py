"""Hostile input, seeded: thousands of WebSocket conversations of valid, mutated and
malformed frames (opcodes, reserved bits, masks, lengths, fragments, close codes
and payloads, batch headers), and hundreds of malformed HTTP requests. The engine
stays up, stores nothing of a message it refused or got after a violation, acks
only what it stored, closes with a protocol code, answers HTTP with 4xx, never
500, and logs no traceback."""

from __future__ import annotations

import asyncio
import base64
import contextlib
import json
import os
import random
import struct
from collections.abc import Iterator
from dataclasses import dataclass, field

import pytest
import redis

from engine.ids import InvalidStreamId
from tests.conftest import EngineProcess
from tests.reference_batch_header import Rejected, reference_parse

CASES = 2400
HTTP_CASES = 400
MAX_MESSAGE = 4096
SEED = 20261130
CONCURRENCY = 40
# A close the engine may send for what a client did wrong, or an echo of the client's own.
PROTOCOL_CLOSES = {1002, 1003, 1007, 1008, 1009}
VALID_CLIENT_CLOSES = {1000, 1001, 3000, 4999}


@pytest.fixture(scope="module")
def fuzz_engine(redis_url: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[EngineProcess]:
    args = ["--max-message-size", str(MAX_MESSAGE), "--log-level", "warning"]
    engine = EngineProcess(tmp_path_factory.mktemp("fuzz"), redis_url, args)
    engine.start()
    yield engine
    engine.stop()


def frame(
    opcode: int, payload: bytes, fin: bool = True, rsv: int = 0, mask: bool = True, long16: bool = False
) -> bytes:
    """A client frame; ``long16`` writes a small length the 16-bit way (not minimal)."""
    size = len(payload)
    first = (0x80 if fin else 0) | rsv | opcode
    masked = 0x80 if mask else 0
    if size < 126 and not long16:
        head = struct.pack("!BB", first, masked | size)
    elif size < 65536:
        head = struct.pack("!BBH", first, masked | 126, size)
    else:
        head = struct.pack("!BBQ", first, masked | 127, size)
    if not mask:
        return head + payload
    key = os.urandom(4)
    return head + key + bytes(b ^ key[i % 4] for i, b in enumerate(payload))


@dataclass
class Case:
    """One conversation: what to send, and which payloads may end up stored."""

    sid: str
    batch: bool
    chunks: list[bytes] = field(default_factory=list)
    allowed: list[bytes] = field(default_factory=list)  # data sent before the first violation
    violated: bool = False
    client_close: int | None = None

    def data(self, payload: bytes, rng: random.Random) -> None:
        """A valid message (as one frame or fragments); in batch mode a header and a blob."""
        if self.batch:
            self.chunks.append(frame(0x1, json.dumps([len(payload)]).encode()))
        if rng.random() < 0.2 and len(payload) > 1:
            cut = rng.randrange(1, len(payload))
            self.chunks += [frame(0x2, payload[:cut], fin=False), frame(0x0, payload[cut:])]
        else:
            self.chunks.append(frame(0x2, payload))
        if not self.violated:
            self.allowed.append(payload)

    def bad(self, chunk: bytes) -> None:
        self.chunks.append(chunk)
        self.violated = True


def make_case(index: int, rng: random.Random) -> Case:
    case = Case(sid=f"fuzz-{SEED}-{index}", batch=rng.random() < 0.3)
    for step in range(rng.randint(1, 6)):
        payload = b"%d:%d:" % (index, step) + rng.randbytes(rng.randint(0, 40))
        kind = rng.random()
        if kind < 0.5:
            case.data(payload, rng)
        elif kind < 0.55:
            case.chunks.append(frame(0x9, payload[:20]))  # ping: answered, nothing stored
        elif case.batch or kind < 0.9:
            chunk, header = bad_frame(payload, case.batch, rng)
            if header is not None and header_fits(header, payload, case.sid):
                # A mutated header may still be a valid one: then it is data.
                case.chunks.append(chunk)
                if not case.violated:
                    case.allowed.append(payload)
            else:
                case.bad(chunk)
        else:
            # A text message in single mode is an entry like any other.
            text = rng.choice([b"[]", b"[1e3]", b'[["a",0]]', payload.hex().encode()])
            case.chunks.append(frame(0x1, text))
            if not case.violated:
                case.allowed.append(text)
    if rng.random() < 0.5:
        code = rng.choice([1000, 1001, 3000, 4999, 1006, 5000, 65535, 1004, 999])
        case.client_close = code
        if code not in VALID_CLIENT_CLOSES:
            case.bad(frame(0x8, code.to_bytes(2, "big") + b"bye"))  # a code no peer may send
        else:
            case.chunks.append(frame(0x8, code.to_bytes(2, "big") + b"bye"))
    return case


def header_fits(header: bytes, payload: bytes, sid: str) -> bool:
    """Whether the reference parser takes ``header`` for one entry of ``payload``."""
    try:
        entries = reference_parse(header, len(payload), "auto", "single", [sid])
    except (Rejected, InvalidStreamId, UnicodeDecodeError, ValueError):
        return False
    return [(start, end) for _, _, start, end in entries] == [(0, len(payload))]


def bad_frame(payload: bytes, batch: bool, rng: random.Random) -> tuple[bytes, bytes | None]:
    """Something a client must not send, in one of many ways; and the batch header
    in it when it is a mutated one (it may turn out valid)."""
    choice = rng.randrange(14 if batch else 11)
    return _bad_frame(choice, payload, rng)


def _bad_frame(choice: int, payload: bytes, rng: random.Random) -> tuple[bytes, bytes | None]:
    if choice == 0:
        return frame(0x2, payload, rsv=rng.choice([0x40, 0x20, 0x10, 0x70])), None
    if choice == 1:
        return frame(rng.choice([3, 4, 5, 6, 7, 0xB, 0xC, 0xD, 0xE, 0xF]), payload), None
    if choice == 2:
        return frame(0x2, payload, mask=False), None
    if choice == 3:
        return frame(0x9, b"p" * 126), None  # a control frame above 125 bytes
    if choice == 4:
        return frame(0x9, b"ping", fin=False), None  # a fragmented control frame
    if choice == 5:
        return frame(0x0, payload), None  # a continuation with nothing to continue
    if choice == 6:
        return frame(0x2, payload, fin=False) + frame(0x2, payload), None  # a message inside a fragmented one
    if choice == 7:
        return frame(0x8, b"\x03"), None  # a close payload of one byte
    if choice == 8:
        return frame(0x8, b"\x03\xe8" + b"\xff\xfe"), None  # a close reason that is not UTF-8
    if choice == 9:
        return frame(0x2, b"x" * (MAX_MESSAGE + rng.randint(1, 2000))), None
    if choice == 10:
        return frame(0x2, payload, long16=True), None  # a length not in its shortest form
    # Batch mode only from here: headers that do not fit their blobs, blobs without headers.
    if choice == 11:
        header = bytearray(json.dumps([len(payload) + 1]).encode())
        header[rng.randrange(len(header))] = rng.randrange(256)
        return frame(0x1, bytes(header)) + frame(0x2, payload), bytes(header)
    if choice == 12:
        return frame(0x2, payload), None
    return frame(
        0x1, rng.choice([b"[]", b"[-1]", b"[1e3]", b'[["a",]]', b"nul", b"[99999999999999999999]"])
    ), None


async def converse(port: int, token: str, case: Case) -> tuple[list[str], int | None]:
    """Send the case's frames; return (ids acked, the server's close code)."""
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    key = base64.b64encode(os.urandom(16)).decode()
    query = f"ack=true&token={token}" + ("&batch=true" if case.batch else "")
    writer.write(
        (
            f"GET /data/{case.sid}/push?{query} HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\n"
            f"Connection: Upgrade\r\nSec-WebSocket-Key: {key}\r\nSec-WebSocket-Version: 13\r\n\r\n"
        ).encode()
    )
    head = await reader.readuntil(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 101"), head
    for chunk in case.chunks:
        writer.write(chunk)
    with contextlib.suppress(ConnectionError):  # the engine may have hung up already
        await writer.drain()
    acked: list[str] = []
    code = None
    try:
        async with asyncio.timeout(5 if case.client_close is not None or case.violated else 1):
            while True:
                first, second = await reader.readexactly(2)
                size = second & 0x7F
                if size == 126:
                    size = int.from_bytes(await reader.readexactly(2), "big")
                elif size == 127:
                    size = int.from_bytes(await reader.readexactly(8), "big")
                payload = await reader.readexactly(size)
                if first & 0x0F == 0x1:
                    acked += payload.decode().split(",")
                elif first & 0x0F == 0x8:
                    code = int.from_bytes(payload[:2], "big") if len(payload) >= 2 else 1005
                    break
    except (TimeoutError, asyncio.IncompleteReadError, ConnectionError):
        pass
    writer.close()
    return acked, code


def test_hostile_websocket_frames(fuzz_engine: EngineProcess, store: redis.Redis) -> None:
    rng = random.Random(SEED)
    cases = [make_case(index, rng) for index in range(CASES)]
    token = fuzz_engine.token()

    async def run_all() -> list[tuple[list[str], int | None]]:
        limit = asyncio.Semaphore(CONCURRENCY)

        async def one(case: Case) -> tuple[list[str], int | None]:
            async with limit:
                return await converse(fuzz_engine.port, token, case)

        return await asyncio.gather(*(one(case) for case in cases))

    results = asyncio.run(run_all())
    assert fuzz_engine.answers_ping(), "the engine stays up"
    violations = 0
    for case, (acked, code) in zip(cases, results, strict=True):
        stored = store.xrange(case.sid)
        payloads = [fields[b"d"] for _, fields in stored]
        ids = [entry_id.decode() for entry_id, _ in stored]
        # Only data sent before the first violation, in order, and all that was acked.
        assert payloads == case.allowed[: len(payloads)], case
        assert set(acked) <= set(ids), case
        if case.violated:
            violations += 1
            assert code is None or code in PROTOCOL_CLOSES or code == case.client_close, (code, case)
        elif case.client_close is not None:
            assert code in (case.client_close, None), (code, case)
            assert ids == acked, case  # a clean close: every stored message was acked first
    assert violations > CASES // 2
    log = fuzz_engine.log()
    assert "Traceback" not in log, log[-3000:]


def http_case(index: int, rng: random.Random, token: str) -> bytes:
    path = rng.choice(
        ["/data/fz", "/data/fz%2Fx", "/streams/fz", "/streams/", "/token", "/ping", "/data/a+b", "/data/%ff"]
    )
    method = rng.choice([b"GET", b"POST", b"PUT", b"DELETE", b"PATCH", b"GE\x00T"])
    headers = [b"Host: x", b"Authorization: Bearer " + token.encode()]
    body = rng.randbytes(rng.randint(0, 200))
    choice = rng.randrange(8)
    if choice == 0:
        headers.append(b"Content-Type: multipart/form-data; boundary=" + rng.randbytes(8))
    elif choice == 1:
        body = b'--b\r\nContent-Disposition: form-data; name="f"; filename="\xff"\r\n\r\n' + body + b"\r\n--b"
        headers.append(b"Content-Type: multipart/form-data; boundary=b")
    elif choice == 2:
        headers.append(b"X-\xe9t\xe9: \xff\xfe")
    elif choice == 3:
        headers[1] = b"Authorization: Bearer \xc3\xa9" + rng.randbytes(3)
    elif choice == 4:
        headers.append(b"Transfer-Encoding: chunked")
        body = b"%x\r\n" % len(body) + body + rng.choice([b"\r\n0\r\n\r\n", b"\r\nzz\r\n", b""])
        return b"\r\n".join([method + b" " + path.encode() + b" HTTP/1.1", *headers]) + b"\r\n\r\n" + body
    elif choice == 5:
        headers.append(b"Content-Type: application/json")
        body = rng.choice([b"{", b"[]", b'{"max_len": "x"}', b"\xff", json.dumps({"max_len": 10}).encode()])
    elif choice == 6:
        path += "?" + rng.choice(
            ["count=-1", "count=99999999999999", "last_entry_id=1-", "info=maybe", "exp=x"]
        )
    length = len(body) + rng.choice([0, 0, 0, -1, 5])
    headers.append(b"Content-Length: %d" % max(0, length))
    return b"\r\n".join([method + b" " + path.encode() + b" HTTP/1.1", *headers]) + b"\r\n\r\n" + body


def test_hostile_http_requests(fuzz_engine: EngineProcess) -> None:
    rng = random.Random(SEED + 1)
    token = fuzz_engine.token()
    requests = [http_case(index, rng, token) for index in range(HTTP_CASES)]

    async def send(request: bytes) -> bytes:
        reader, writer = await asyncio.open_connection("127.0.0.1", fuzz_engine.port)
        writer.write(request)
        try:
            async with asyncio.timeout(3):
                return await reader.readuntil(b"\r\n")
        except (TimeoutError, asyncio.IncompleteReadError, ConnectionError):
            return b""
        finally:
            writer.close()

    async def run_all() -> list[bytes]:
        limit = asyncio.Semaphore(CONCURRENCY)

        async def one(request: bytes) -> bytes:
            async with limit:
                return await send(request)

        return await asyncio.gather(*(one(request) for request in requests))

    statuses = asyncio.run(run_all())
    answered = [line for line in statuses if line]
    assert len(answered) > HTTP_CASES // 2
    for request, line in zip(requests, statuses, strict=True):
        if line:
            status = int(line.split()[1])
            assert status < 500, (line, request[:200])
    assert fuzz_engine.answers_ping()
    log = fuzz_engine.log()
    assert "Traceback" not in log, log[-3000:]
