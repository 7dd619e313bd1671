"""ReplyFeeder: stream replies fed whole, one byte at a time and in random
pieces (hypothesis); entries as ready WebSocket frames; join_entries; and real
replies from a real Redis."""

from __future__ import annotations

import json
import uuid

import pytest
import redis
from hypothesis import given, settings
from hypothesis import strategies as st

from engine._core import RedisProtocolError, ReplyFeeder, StreamKey, join_entries
from tests.rawredis import redis_socket


def bulk(data: bytes) -> bytes:
    return b"$%d\r\n%s\r\n" % (len(data), data)


def resp_entry(entry_id: bytes, fields: list[bytes]) -> bytes:
    return b"*2\r\n" + bulk(entry_id) + b"*%d\r\n" % len(fields) + b"".join(bulk(f) for f in fields)


def resp_range(entries: list[tuple[bytes, list[bytes]]]) -> bytes:
    return b"*%d\r\n" % len(entries) + b"".join(resp_entry(i, f) for i, f in entries)


def resp_xread(streams: list[tuple[bytes, list[tuple[bytes, list[bytes]]]]]) -> bytes:
    out = b"*%d\r\n" % len(streams)
    for key, entries in streams:
        out += b"*2\r\n" + bulk(key) + resp_range(entries)
    return out


def ws_frame(opcode: int, payload: bytes) -> bytes:
    size = len(payload)
    if size < 126:
        head = bytes([0x80 | opcode, size])
    elif size < 65536:
        head = bytes([0x80 | opcode, 126]) + size.to_bytes(2, "big")
    else:
        head = bytes([0x80 | opcode, 127]) + size.to_bytes(8, "big")
    return head + payload


CAM, IMU = StreamKey("cam"), StreamKey("caméra/ü")
BIG = bytes(range(256)) * 700  # above the parser's buffer: read straight into the entry

XREAD = resp_xread(
    [
        (IMU.key, [(b"1-1", [b"d", b"hello"]), (b"2-0", [b"x", b"zz", b"d", BIG])]),
        (CAM.key, [(b"3-7", [b"other", b"q"]), (b"18446744073709551615-4", [b"d", b""])]),
    ]
)
REPLIES = XREAD + b"+OK\r\n*0\r\n*-1\r\n-WRONGTYPE not a stream\r\n:42\r\n$3\r\nabc\r\n$-1\r\n"


def expect_all(parser: ReplyFeeder) -> None:
    parser.expect("xread", [CAM, IMU])
    parser.expect("simple")
    parser.expect("range", [CAM])
    parser.expect("xread", [CAM])
    parser.expect("range", [CAM])
    parser.expect("simple")
    parser.expect("simple")
    parser.expect("simple")


def check_all(replies: list[object]) -> None:
    assert len(replies) == 8
    xread = replies[0]
    assert isinstance(xread, list)
    cam, imu = xread
    assert [(e.entry_id, e.payload) for e in imu] == [("1-1", b"hello"), ("2-0", BIG)]
    assert [(e.entry_id, e.payload) for e in cam] == [("3-7", b""), ("18446744073709551615-4", b"")]
    assert cam[1].id_pair == (2**64 - 1, 4)
    assert imu[0].sid == "caméra/ü"
    assert replies[1:4] == [b"OK", [], [[]]]
    assert "WRONGTYPE" in str(replies[4])
    assert replies[5:] == [42, b"abc", None]


def feed_in_pieces(data: bytes, cuts: list[int]) -> list[object]:
    parser = ReplyFeeder()
    expect_all(parser)
    replies: list[object] = []
    start = 0
    for cut in [*sorted(cuts), len(data)]:
        replies += parser.feed(data[start:cut])
        start = cut
    return replies


def test_replies_fed_whole() -> None:
    check_all(feed_in_pieces(REPLIES, []))


def test_replies_fed_one_byte_at_a_time() -> None:
    check_all(feed_in_pieces(REPLIES, list(range(1, len(REPLIES)))))


@settings(max_examples=60, deadline=None)
@given(st.lists(st.integers(min_value=0, max_value=len(REPLIES)), max_size=40))
def test_replies_fed_in_any_pieces(cuts: list[int]) -> None:
    check_all(feed_in_pieces(REPLIES, cuts))


def test_entry_frames_are_a_one_entry_step() -> None:
    (entry,) = feed_in_pieces_single(resp_range([(b"5-1", [b"d", b"payload"])]), CAM)
    text, binary = entry.frames
    assert text == ws_frame(0x1, b'[["cam","5-1",0]]')
    assert binary == ws_frame(0x2, b"payload")


@pytest.mark.parametrize("size", [0, 125, 126, 65535, 65536])
def test_binary_frame_length_forms(size: int) -> None:
    payload = b"p" * size
    (entry,) = feed_in_pieces_single(resp_range([(b"1-0", [b"d", payload])]), CAM)
    assert entry.frames[1] == ws_frame(0x2, payload)


def test_non_ascii_and_long_stream_ids_are_escaped_in_frames() -> None:
    long_key = StreamKey("é" * 128)  # 256 bytes of UTF-8: the text frame needs a 16-bit length
    (entry,) = feed_in_pieces_single(resp_range([(b"1-0", [b"d", b"x"])]), long_key)
    text = entry.frames[0]
    assert text[:2] == bytes([0x81, 126])
    body = text[4:]
    assert body.isascii()
    assert json.loads(body) == [["é" * 128, "1-0", 0]]


def feed_in_pieces_single(data: bytes, key: StreamKey) -> list:  # type: ignore[type-arg]
    parser = ReplyFeeder()
    parser.expect("range", [key])
    (reply,) = parser.feed(data)
    assert isinstance(reply, list)
    return reply


def test_join_entries_body_and_ascii_offsets() -> None:
    entries = feed_in_pieces(REPLIES, [])[0]
    assert isinstance(entries, list)
    cam, imu = entries
    body, header = join_entries(imu + cam)
    assert body == b"hello" + BIG
    assert header.isascii()
    assert json.loads(header) == [
        ["caméra/ü", "1-1", 0],
        ["caméra/ü", "2-0", 5],
        ["cam", "3-7", 5 + len(BIG)],
        ["cam", "18446744073709551615-4", 5 + len(BIG)],
    ]
    assert join_entries([]) == (b"", "[]")


@pytest.mark.parametrize(
    "data",
    [
        b"+OK\r\n",  # a status where a stream read was expected
        b"*1\r\n*3\r\n",  # a pair of three
        b"*1\r\n*2\r\n$4\r\nnope\r\n*0\r\n",  # a key that was not asked about
        b"*1\r\n*2\r\n$3\r\ncam\r\n*1\r\n*2\r\n$3\r\nabc\r\n*0\r\n",  # a bad entry id
        b"*1\r\n*2\r\n$3\r\ncam\r\n*x\r\n",  # not a number
        b"*1\r\n" + b"9" * 100,  # a line without an end
    ],
)
def test_garbage_is_a_protocol_error(data: bytes) -> None:
    parser = ReplyFeeder()
    parser.expect("xread", [CAM])
    with pytest.raises(RedisProtocolError):
        parser.feed(data)


def test_a_reply_nobody_asked_for_is_a_protocol_error() -> None:
    parser = ReplyFeeder()
    parser.expect("simple")
    with pytest.raises(RedisProtocolError):
        parser.feed(b"+OK\r\n+OK\r\n")


def raw_command(url: str, *arguments: bytes) -> bytes:
    """Send one command on a fresh socket; return the raw reply bytes."""
    request = b"*%d\r\n" % len(arguments) + b"".join(bulk(a) for a in arguments)
    with redis_socket(url) as sock:
        sock.sendall(request + b"*1\r\n$4\r\nPING\r\n")
        data = b""
        while not data.endswith(b"+PONG\r\n"):
            chunk = sock.recv(1 << 20)
            assert chunk
            data += chunk
    return data[: -len(b"+PONG\r\n")]


def test_real_redis_replies(redis_url: str) -> None:
    store = redis.Redis.from_url(redis_url)
    sid = f"reply-{uuid.uuid4().hex[:8]}"
    key = StreamKey(sid)
    payloads = [b"", b"x", BIG, bytes(range(256))]
    ids = [store.xadd(sid, {"d": payload}).decode() for payload in payloads]
    store.xadd(sid, {"other": b"1", "d": b"second-field"})
    for command, shape in (
        ((b"XRANGE", key.key, b"-", b"+"), "range"),
        ((b"XREAD", b"STREAMS", key.key, b"0"), "xread"),
    ):
        parser = ReplyFeeder()
        parser.expect(shape, [key])
        data = raw_command(redis_url, *command)
        for piece in (data[:1000], data[1000:1001], data[1001:]):
            replies = parser.feed(piece)
        (reply,) = replies
        entries = reply if shape == "range" else reply[0]
        assert [e.entry_id for e in entries[:4]] == ids
        assert [e.payload for e in entries] == [*payloads, b"second-field"]
