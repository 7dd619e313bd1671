"""RespWriter: exact bytes, the by-reference threshold, take() lifetimes, a
hiredis round trip under hypothesis, and XADDs sent raw to a real Redis."""

from __future__ import annotations

import socket
import uuid
from dataclasses import dataclass

import hiredis
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from engine._core import RespWriter
from tests.rawredis import redis_socket

THRESHOLD = 16 * 1024


def resp_command(*arguments: bytes) -> bytes:
    """The RESP2 encoding of a command, written from the spec."""
    out = [b"*%d\r\n" % len(arguments)]
    for argument in arguments:
        out.append(b"$%d\r\n%s\r\n" % (len(argument), argument))
    return b"".join(out)


def xadd_args(key: bytes, entry_id: bytes, payload: bytes, maxlen: int) -> tuple[bytes, ...]:
    return (b"XADD", key, b"MAXLEN", b"~", b"%d" % maxlen, entry_id, b"d", payload)


def joined(chunks: list[bytes | memoryview]) -> bytes:
    return b"".join(chunks)


def test_xadd_exact_bytes() -> None:
    writer = RespWriter()
    writer.xadd(b"cam1", b"*", b"hello", 1000)
    assert writer.command_count == 1
    expected = (
        b"*8\r\n$4\r\nXADD\r\n$4\r\ncam1\r\n$6\r\nMAXLEN\r\n$1\r\n~\r\n"
        b"$4\r\n1000\r\n$1\r\n*\r\n$1\r\nd\r\n$5\r\nhello\r\n"
    )
    assert writer.pending_bytes == len(expected)
    assert writer.take() == [expected]


def test_xadd_empty_payload_and_zero_maxlen() -> None:
    writer = RespWriter()
    writer.xadd(b"s", b"5-1", b"", 0)
    assert joined(writer.take()) == resp_command(*xadd_args(b"s", b"5-1", b"", 0))


def test_command_exact_bytes() -> None:
    writer = RespWriter()
    writer.command("PING")
    writer.command(b"GET", bytearray(b"k"), memoryview(b"xvx")[1:2], 42, "é")
    assert writer.command_count == 2
    assert writer.take() == [
        b"*1\r\n$4\r\nPING\r\n*5\r\n$3\r\nGET\r\n$1\r\nk\r\n$1\r\nv\r\n$2\r\n42\r\n$2\r\n\xc3\xa9\r\n"
    ]


@pytest.mark.parametrize("bad", [1.5, None, True, object()])
def test_command_refuses_bad_argument_and_frames_nothing(bad: object) -> None:
    writer = RespWriter()
    writer.command("PING")
    before = writer.pending_bytes
    with pytest.raises(TypeError):
        writer.command("SET", "k", bad)  # type: ignore[arg-type]
    assert writer.pending_bytes == before
    assert writer.command_count == 1
    assert joined(writer.take()) == resp_command(b"PING")


def test_command_needs_arguments() -> None:
    with pytest.raises(ValueError):
        RespWriter().command()


def test_negative_maxlen_refused() -> None:
    writer = RespWriter()
    with pytest.raises(ValueError):
        writer.xadd(b"s", b"*", b"x", -1)
    assert writer.pending_bytes == 0


def test_threshold_must_be_positive() -> None:
    with pytest.raises(ValueError):
        RespWriter(by_reference_threshold=0)


def test_payload_below_threshold_is_copied() -> None:
    writer = RespWriter()
    payload = bytearray(b"a" * (THRESHOLD - 1))
    writer.xadd(b"s", b"*", payload, 10)
    payload[0] = ord("b")  # copied: the framed bytes do not change
    chunks = writer.take()
    assert len(chunks) == 1
    assert joined(chunks) == resp_command(*xadd_args(b"s", b"*", b"a" * (THRESHOLD - 1), 10))


def test_payload_at_threshold_is_passed_by_reference() -> None:
    writer = RespWriter()
    payload = b"p" * THRESHOLD
    writer.xadd(b"s", b"*", b"small", 10)
    writer.xadd(b"s", b"*", payload, 10)
    writer.xadd(b"s", b"*", b"small", 10)
    chunks = writer.take()
    assert len(chunks) == 3
    assert chunks[1] is payload
    assert isinstance(chunks[0], bytes) and isinstance(chunks[2], bytes)
    assert chunks[0].endswith(b"$%d\r\n" % THRESHOLD)
    assert chunks[2].startswith(b"\r\n*8\r\n")
    assert joined(chunks) == b"".join(
        resp_command(*xadd_args(b"s", b"*", p, 10)) for p in (b"small", payload, b"small")
    )


def test_buffer_payload_by_reference_is_a_flat_view() -> None:
    import array

    writer = RespWriter(by_reference_threshold=8)
    payload = array.array("i", range(4))  # 16 bytes, items of 4 bytes
    writer.xadd(b"s", b"*", payload, 10)
    chunks = writer.take()
    view = chunks[1]
    assert isinstance(view, memoryview)
    assert view.itemsize == 1 and len(view) == 16  # transports count len() in bytes
    assert joined(chunks) == resp_command(*xadd_args(b"s", b"*", payload.tobytes(), 10))


def test_large_command_argument_by_reference() -> None:
    writer = RespWriter(by_reference_threshold=4)
    value = b"0123456789"
    writer.command("SET", "k", value)
    chunks = writer.take()
    assert any(chunk is value for chunk in chunks)
    assert joined(chunks) == resp_command(b"SET", b"k", value)


def test_take_resets_and_chunks_survive_buffer_reuse() -> None:
    writer = RespWriter(initial_capacity=64)
    writer.xadd(b"s", b"*", b"first" * 10, 10)
    first = writer.take()
    assert writer.pending_bytes == 0 and writer.command_count == 0
    assert writer.take() == []
    # The owned buffer is reused; chunks already handed out must not change.
    writer.xadd(b"s", b"*", b"second" * 10, 10)
    assert joined(first) == resp_command(*xadd_args(b"s", b"*", b"first" * 10, 10))
    assert joined(writer.take()) == resp_command(*xadd_args(b"s", b"*", b"second" * 10, 10))


def test_growth_past_initial_capacity_and_back() -> None:
    writer = RespWriter(initial_capacity=64, by_reference_threshold=1 << 30)
    payloads = [bytes([i % 256]) * (i * 97 % 5000) for i in range(600)]  # ~1.5 MiB
    for payload in payloads:
        writer.xadd(b"stream", b"*", payload, 1000)
    expected = b"".join(resp_command(*xadd_args(b"stream", b"*", p, 1000)) for p in payloads)
    assert writer.pending_bytes == len(expected)
    assert joined(writer.take()) == expected
    writer.xadd(b"s", b"1-1", b"again", 5)  # after the oversized buffer was given back
    assert joined(writer.take()) == resp_command(*xadd_args(b"s", b"1-1", b"again", 5))


def parse_all(data: bytes) -> list[object]:
    reader = hiredis.Reader()
    reader.feed(data)
    replies = []
    while (reply := reader.gets()) is not False:
        replies.append(reply)
    return replies


payload_sizes = st.one_of(
    st.integers(0, 300),
    st.sampled_from([0, 1, THRESHOLD - 1, THRESHOLD, THRESHOLD + 1, 256 * 1024, 1 << 20]),
)


@st.composite
def payloads(draw: st.DrawFn) -> bytes:
    size = draw(payload_sizes)
    head = draw(st.binary(max_size=min(size, 64)))
    return (head + b"\r\n$*" * (size // 4 + 1))[:size] if head else bytes(size)


@dataclass
class Xadd:
    key: bytes
    entry_id: bytes
    payload: bytes
    maxlen: int


@dataclass
class Command:
    arguments: list[bytes]


operations = st.one_of(
    st.builds(
        Xadd,
        key=st.binary(min_size=1, max_size=300),
        entry_id=st.sampled_from([b"*", b"1-1", b"1700000000000-*", b"18446744073709551615-0"]),
        payload=payloads(),
        maxlen=st.integers(0, 2**63 - 1),
    ),
    st.builds(Command, arguments=st.lists(st.binary(max_size=40), min_size=1, max_size=6)),
)


@settings(max_examples=60, deadline=None)
@given(
    st.lists(operations, max_size=12),
    st.sampled_from([1, 100, THRESHOLD]),
    st.sampled_from([64, 65536]),
)
def test_round_trip_through_hiredis(ops: list[Xadd | Command], threshold: int, initial_capacity: int) -> None:
    writer = RespWriter(by_reference_threshold=threshold, initial_capacity=initial_capacity)
    expected_commands = []
    for op in ops:
        if isinstance(op, Xadd):
            writer.xadd(op.key, op.entry_id, op.payload, op.maxlen)
            expected_commands.append(list(xadd_args(op.key, op.entry_id, op.payload, op.maxlen)))
        else:
            writer.command(*op.arguments)
            expected_commands.append(op.arguments)
    expected = b"".join(resp_command(*command) for command in expected_commands)
    assert writer.command_count == len(ops)
    assert writer.pending_bytes == len(expected)
    chunks = writer.take()
    data = joined(chunks)
    assert data == expected
    assert parse_all(data) == expected_commands
    for chunk in chunks:
        assert isinstance(chunk, bytes | memoryview)
        # Anything not copied is a payload at or above the threshold.
        assert isinstance(chunk, bytes) or len(chunk) >= threshold


def exchange(sock: socket.socket, writer: RespWriter) -> list[object]:
    """Send everything framed so far, chunk by chunk, and read one reply per command."""
    expected = writer.command_count
    for chunk in writer.take():
        sock.sendall(chunk)
    reader = hiredis.Reader()
    replies: list[object] = []
    while len(replies) < expected:
        data = sock.recv(1 << 20)
        assert data, "Redis closed the connection"
        reader.feed(data)
        while (reply := reader.gets()) is not False:
            replies.append(reply)
    return replies


def test_raw_xadds_come_back_identical_from_redis(redis_url: str) -> None:
    key = f"test-resp-writer-{uuid.uuid4()}".encode()
    payloads = [
        b"",
        b"x",
        b"\r\n$-1\r\n*0\r\n",
        bytes(range(256)) * 64,
        b"\x00" * THRESHOLD,
        b"z" * (1 << 20),
    ]
    writer = RespWriter()
    with redis_socket(redis_url) as sock:
        for i, payload in enumerate(payloads):
            writer.xadd(key, b"%d-1" % (i + 1), payload, 1000)
        ids = exchange(sock, writer)
        assert ids == [b"%d-1" % (i + 1) for i in range(len(payloads))]
        writer.command("XRANGE", key, "-", "+")
        [entries] = exchange(sock, writer)
        assert entries == [
            [entry_id, [b"d", payload]] for entry_id, payload in zip(ids, payloads, strict=True)
        ]
        writer.command("DEL", key)
        assert exchange(sock, writer) == [1]
