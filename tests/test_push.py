"""WebSocket push end to end: bytes in = bytes out (XRANGE), every mode and header
form, every error close; the engine runs on uvloop and on plain asyncio."""

from __future__ import annotations

import json
import os
from pathlib import Path

import httpx
import pytest
import redis

from tests.conftest import EngineProcess, stored
from tests.pushclient import push, push_url

MIB = 1024 * 1024


def url(engine: EngineProcess, token: str, segment: str, **query: object) -> str:
    return push_url(engine.ws_url, segment, token, **query)


# single mode ---------------------------------------------------------------------


async def test_single_mode_stores_each_message_and_acks_in_order(
    loop_engine: EngineProcess, loop_token: str, store: redis.Redis, sid: str
) -> None:
    messages: list[bytes | str] = [b"first", b"", os.urandom(100_000), "text é", b"\x00\xff" * 10]
    result = await push(url(loop_engine, loop_token, sid, ack=True), messages, expect_acks=5)
    entries = stored(store, sid)
    assert [data for _, data in entries] == [m.encode() if isinstance(m, str) else m for m in messages]
    assert result.acks == [entry_id for entry_id, _ in entries]


async def test_single_mode_without_ack_sends_nothing_back_and_stores_all(
    loop_engine: EngineProcess, loop_token: str, store: redis.Redis, sid: str
) -> None:
    messages: list[bytes | str] = [i.to_bytes(4, "big") for i in range(500)]
    result = await push(url(loop_engine, loop_token, sid), messages)
    assert result.acks == []
    await _eventually(lambda: store.xlen(sid) == 500, message=lambda: f"stored {store.xlen(sid)}")
    assert [data for _, data in stored(store, sid)] == messages


async def test_a_16_mib_entry_round_trips(
    loop_engine: EngineProcess, loop_token: str, store: redis.Redis, sid: str
) -> None:
    blob = os.urandom(16 * MIB)
    result = await push(url(loop_engine, loop_token, sid, ack=True), [blob, b"after"], expect_acks=2)
    assert len(result.acks) == 2
    assert [data for _, data in stored(store, sid)] == [blob, b"after"]


# batch mode -------------------------------------------------------------------------


def frames(*entries: bytes) -> tuple[list[int], list[int], bytes]:
    """START offsets, END offsets and the blob of some entries."""
    starts, ends, position = [], [], 0
    for entry in entries:
        starts.append(position)
        position += len(entry)
        ends.append(position)
    return starts, ends, b"".join(entries)


@pytest.mark.parametrize(
    "form",
    ["end-json", "start-json", "start-comma", "sid-start", "sid-end", "explicit-end", "explicit-start"],
)
async def test_every_header_form_stores_every_entry(
    loop_engine: EngineProcess, loop_token: str, store: redis.Redis, sid: str, form: str
) -> None:
    entries = [b"alpha", b"", b"gamma-gamma", os.urandom(3000), b"z"]
    starts, ends, blob = frames(*entries)
    query: dict[str, object] = {"batch": True, "ack": True}
    header: str
    if form == "end-json":
        header = json.dumps(ends)
    elif form == "start-json":
        header = json.dumps(starts)
    elif form == "start-comma":
        header = ",".join(map(str, starts))
    elif form == "sid-start":
        header = json.dumps([[sid, offset] for offset in starts])
    elif form == "sid-end":
        header = json.dumps([["ignored-in-single-mode", offset] for offset in ends])
    elif form == "explicit-end":
        header, query["offsets"] = json.dumps(ends), "end"
    else:
        header, query["offsets"] = json.dumps(starts), "start"
    result = await push(url(loop_engine, loop_token, sid, **query), [header, blob], expect_acks=1)
    got = stored(store, sid)
    assert [data for _, data in got] == entries
    assert result.acks == [",".join(entry_id for entry_id, _ in got)]


async def test_several_batches_on_one_socket_keep_their_order(
    loop_engine: EngineProcess, loop_token: str, store: redis.Redis, sid: str
) -> None:
    messages: list[bytes | str] = []
    expected = []
    for batch in range(20):
        entries = [f"{batch}:{i}".encode() for i in range(batch % 5 + 1)]
        _, ends, blob = frames(*entries)
        messages += [json.dumps(ends), blob]
        expected += entries
    result = await push(url(loop_engine, loop_token, sid, batch=True, ack=True), messages, expect_acks=20)
    got = stored(store, sid)
    assert [data for _, data in got] == expected
    assert ",".join(result.acks) == ",".join(entry_id for entry_id, _ in got)


async def test_entry_ids_from_the_header(
    loop_engine: EngineProcess, loop_token: str, store: redis.Redis, sid: str
) -> None:
    header = json.dumps([[sid, "1000-5", 0], [sid, 2000, 1], [sid, None, 2], [sid, "*", 3]])
    result = await push(
        url(loop_engine, loop_token, sid, batch=True, ack=True),
        [header, b"abcd"],
        expect_acks=1,
        wait_close=False,
    )
    if int(str(store.info("server")["redis_version"]).split(".")[0]) < 7:
        # "ms-*" ids need Redis 7: the server's limit (1011), not the client's mistake
        assert result.close_code == 1011 and "ms-*" in result.close_reason
        return
    assert result.close_code is None, result
    ids = result.acks[0].split(",")
    assert ids[0] == "1000-5"
    assert ids[1] == "2000-0"
    assert int(ids[2].split("-")[0]) > 2000 and ids[3] > ids[2]
    assert [data for _, data in stored(store, sid)] == [b"a", b"b", b"c", b"d"]


async def test_star_routes_each_entry_by_its_header_stream(
    loop_engine: EngineProcess, loop_token: str, store: redis.Redis, sid: str
) -> None:
    header = json.dumps([[f"{sid}-a", 0], [f"{sid}-b", 3], [f"{sid}-a", 6]])
    result = await push(url(loop_engine, loop_token, "*", ack=True), [header, b"111222333"], expect_acks=1)
    assert len(result.acks[0].split(",")) == 3
    assert [d for _, d in stored(store, f"{sid}-a")] == [b"111", b"333"]
    assert [d for _, d in stored(store, f"{sid}-b")] == [b"222"]


async def test_listed_streams_take_plain_offsets_in_path_order(
    loop_engine: EngineProcess, loop_token: str, store: redis.Redis, sid: str
) -> None:
    segment = f"{sid}-x+{sid}-y"
    result = await push(url(loop_engine, loop_token, segment, ack=True), ["[0, 2]", b"xxyyy"], expect_acks=1)
    assert result.close_code is None or result.close_code == 1000
    assert [d for _, d in stored(store, f"{sid}-x")] == [b"xx"]
    assert [d for _, d in stored(store, f"{sid}-y")] == [b"yyy"]


# per-stream max_len ---------------------------------------------------------------------


async def test_per_stream_max_len_is_applied(
    loop_engine: EngineProcess, loop_token: str, store: redis.Redis, sid: str
) -> None:
    auth = {"Authorization": f"Bearer {loop_token}"}
    small, large = f"{sid}-small", f"{sid}-large"
    httpx.put(
        f"{loop_engine.base_url}/streams/{small}", json={"max_len": 10}, headers=auth
    ).raise_for_status()
    httpx.put(
        f"{loop_engine.base_url}/streams/{large}", json={"max_len": 100_000}, headers=auth
    ).raise_for_status()
    for stream in (small, large):
        _, ends, blob = frames(*[b"e%d" % i for i in range(1500)])
        await push(
            url(loop_engine, loop_token, stream, batch=True, ack=True),
            [json.dumps(ends), blob],
            expect_acks=1,
        )
    assert 10 <= store.xlen(small) <= 200  # MAXLEN ~ trims whole nodes of 100 entries
    assert store.xlen(large) == 1500  # the server default (1000) did not apply


# errors ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("segment_suffix", "query", "messages", "code", "reason"),
    [
        ("", {"batch": True}, ["not json", b"abc"], 1007, "JSON"),
        ("", {"batch": True}, ["[0, 5, 3]", b"abcdef"], 1007, "below the previous"),
        ("", {"batch": True}, ["[0, 10]", b"abc"], 1007, "blob"),
        ("", {"batch": True}, ["[1, 2]", b"abc"], 1007, ""),
        ("", {"batch": True}, [b"abc"], 1007, "no header"),
        ("", {"batch": True}, ["[0]", "[0]"], 1007, "header"),
        ("", {"batch": True}, ["[0.5]", b"abc"], 1007, ""),
        ("", {"batch": True, "offsets": "end"}, ["[1, 2]", b"abc"], 1007, ""),
        ("+{sid}-other", {}, ["[0, 1, 2]", b"abc"], 1007, ""),
        ("+{sid}-other", {}, [json.dumps([["elsewhere", 0]]), b"abc"], 1008, ""),
        ("*", {}, ["[0, 1]", b"ab"], 1007, ""),
        ("*", {}, [json.dumps([["XMETA:x", 0]]), b"ab"], 1007, "reserved"),
    ],
)
async def test_bad_input_closes_with_the_protocol_code_and_writes_nothing(
    loop_engine: EngineProcess,
    loop_token: str,
    store: redis.Redis,
    sid: str,
    segment_suffix: str,
    query: dict[str, object],
    messages: list[bytes | str],
    code: int,
    reason: str,
) -> None:
    # One good batch first: it is acked and must stay stored.
    segment = "*" if segment_suffix == "*" else sid + segment_suffix.format(sid=sid)
    good_offset = 4 if query.get("offsets") == "end" else 0  # b"kept" is 4 bytes
    good_header = json.dumps([[sid, good_offset]]) if segment != sid else f"[{good_offset}]"
    result = await push(
        url(loop_engine, loop_token, segment, ack=True, **query),
        [good_header, b"kept", *messages],
        expect_acks=1,
        wait_close=True,
    )
    assert result.close_code == code, result
    assert reason in result.close_reason
    assert len(result.acks) == 1
    assert [d for _, d in stored(store, sid)] == [b"kept"]
    assert store.xlen(f"{sid}-other") == 0


async def test_message_above_the_size_limit_closes_1009(
    redis_url: str, tmp_path: Path, store: redis.Redis, sid: str
) -> None:
    engine = EngineProcess(tmp_path, redis_url, ["--max-message-size", "1000", "--log-level", "warning"])
    engine.start()
    try:
        result = await push(
            url(engine, engine.token(), sid, ack=True), [b"ok", b"x" * 1001], expect_acks=1, wait_close=True
        )
    finally:
        engine.stop()
    assert result.close_code == 1009
    assert [d for _, d in stored(store, sid)] == [b"ok"]


async def test_bad_query_is_400_at_the_handshake(
    loop_engine: EngineProcess, loop_token: str, sid: str
) -> None:
    import websockets
    from websockets.exceptions import InvalidStatus

    for query in ({"batch": "maybe"}, {"offsets": "middle"}, {"ack": "2"}):
        with pytest.raises(InvalidStatus) as refused:
            async with websockets.connect(url(loop_engine, loop_token, sid, **query)):
                pass
        assert refused.value.response.status_code == 400


async def _eventually(check, timeout: float = 10.0, message=lambda: "") -> None:  # type: ignore[no-untyped-def]
    import asyncio

    try:
        async with asyncio.timeout(timeout):
            while not check():
                await asyncio.sleep(0.02)
    except TimeoutError:
        raise AssertionError(f"not within {timeout} s: {message()}") from None


async def test_fragmented_messages_are_reassembled(
    loop_engine: EngineProcess, loop_token: str, store: redis.Redis, sid: str
) -> None:
    import websockets

    parts = [b"frag-1|", b"", b"frag-2|" * 1000, b"end"]
    async with websockets.connect(url(loop_engine, loop_token, sid, ack=True)) as ws:
        await ws.send(iter(parts))
        ack = await ws.recv()
    assert stored(store, sid) == [(ack, b"".join(parts))]


async def test_fragmented_message_above_the_limit_closes_1009(
    redis_url: str, tmp_path: Path, store: redis.Redis, sid: str
) -> None:
    import websockets

    engine = EngineProcess(tmp_path, redis_url, ["--max-message-size", "1000", "--log-level", "warning"])
    engine.start()
    try:
        async with websockets.connect(url(engine, engine.token(), sid)) as ws:
            await ws.send(iter([b"x" * 600, b"y" * 600]))
            await ws.wait_closed()
    finally:
        engine.stop()
    assert ws.close_code == 1009
    assert store.xlen(sid) == 0


async def test_picows_client_batch_push(
    loop_engine: EngineProcess, loop_token: str, store: redis.Redis, sid: str
) -> None:
    import asyncio

    from picows import WSListener, WSMsgType, WSTransport, ws_connect

    acks: asyncio.Queue[str] = asyncio.Queue()

    class Client(WSListener):  # type: ignore[misc]
        def on_ws_frame(self, transport: WSTransport, frame) -> None:  # type: ignore[no-untyped-def]
            if frame.msg_type == WSMsgType.TEXT:
                acks.put_nowait(frame.get_payload_as_utf8_text())

    transport, _ = await ws_connect(Client, url(loop_engine, loop_token, sid, batch=True, ack=True))
    entries = [os.urandom(size) for size in (0, 1, 20_000, 70_000)]
    _, ends, blob = frames(*entries)
    transport.send(WSMsgType.TEXT, json.dumps(ends).encode())
    transport.send(WSMsgType.BINARY, blob)
    ack = await asyncio.wait_for(acks.get(), 10)
    transport.disconnect()
    got = stored(store, sid)
    assert [data for _, data in got] == entries
    assert ack == ",".join(entry_id for entry_id, _ in got)


async def test_a_batch_header_above_8_mib_closes_1009(
    loop_engine: EngineProcess, loop_token: str, store: redis.Redis, sid: str
) -> None:
    header = "[" + ",".join(["0"] * (4 * MIB + 1)) + "]"
    result = await push(url(loop_engine, loop_token, sid, batch=True), [header, b""], wait_close=True)
    assert result.close_code == 1009
    assert store.xlen(sid) == 0


@pytest.mark.parametrize("piece", [1, 2, 5, 64])
async def test_a_batch_split_into_fragments_of_any_size_stores_the_same_entries(
    loop_engine: EngineProcess, loop_token: str, store: redis.Redis, sid: str, piece: int
) -> None:
    import websockets

    entries = [b"alpha", b"", b"\x00\xff" * 20, "é".encode()]
    _, ends, blob = frames(*entries)
    header = json.dumps([[sid, end] for end in ends]).encode()

    def pieces(data: bytes) -> list[bytes]:
        return [data[i : i + piece] for i in range(0, len(data), piece)] or [b""]

    async with websockets.connect(url(loop_engine, loop_token, sid, batch=True, ack=True)) as ws:
        await ws.send(iter([part.decode("latin-1") for part in pieces(header)]))
        await ws.send(iter(pieces(blob)))
        ack = await ws.recv()
    got = stored(store, sid)
    assert [data for _, data in got] == entries
    assert ack == ",".join(entry_id for entry_id, _ in got)


async def test_frames_arriving_one_byte_per_tcp_segment(
    loop_engine: EngineProcess, loop_token: str, store: redis.Redis, sid: str
) -> None:
    import asyncio
    import struct

    from tests.wsraw import handshake

    status, _, rest, sock = handshake(loop_engine.port, f"/data/{sid}/push?ack=true&token={loop_token}")
    assert status == 101 and rest == b""

    def masked_frame(opcode: int, payload: bytes) -> bytes:
        mask = os.urandom(4)
        body = bytes(byte ^ mask[i % 4] for i, byte in enumerate(payload))
        return struct.pack("!BB", 0x80 | opcode, 0x80 | len(payload)) + mask + body

    with sock:
        sock.setblocking(True)
        for byte in masked_frame(0x2, b"slow entry"):
            sock.sendall(bytes([byte]))
            await asyncio.sleep(0)
        reply = sock.recv(100)
    assert reply[0] == 0x81
    assert stored(store, sid) == [(reply[2:].decode(), b"slow entry")]


# Several messages in one TCP write: the engine handles them in one read pass.


def test_a_bad_batch_queued_behind_a_metadata_wait_still_acks_the_good_one(
    loop_engine: EngineProcess, loop_token: str, store: redis.Redis, sid: str
) -> None:
    from tests.wsraw import handshake, masked_frame, read_until_close

    status, _, rest, sock = handshake(loop_engine.port, f"/data/*/push?ack=true&token={loop_token}")
    assert status == 101
    with sock:
        sock.sendall(
            masked_frame(0x1, json.dumps([[sid, 0]]).encode())  # a stream not seen yet: max_len loads
            + masked_frame(0x2, b"kept")
            + masked_frame(0x1, b"not json")
            + masked_frame(0x2, b"never")
        )
        acks, code, reason = read_until_close(sock, rest)
    assert code == 1007 and "JSON" in reason
    assert len(acks) == 1
    assert stored(store, sid) == [(acks[0], b"kept")]


def test_acks_go_out_before_the_echo_of_a_client_close(
    loop_engine: EngineProcess, loop_token: str, store: redis.Redis, sid: str
) -> None:
    from tests.wsraw import handshake, masked_frame, read_until_close

    status, _, rest, sock = handshake(loop_engine.port, f"/data/{sid}/push?ack=true&token={loop_token}")
    assert status == 101
    with sock:
        sock.sendall(
            masked_frame(0x2, b"one")
            + masked_frame(0x2, b"two")
            + masked_frame(0x2, b"three")
            + masked_frame(0x8, (1000).to_bytes(2, "big"))
        )
        acks, code, _ = read_until_close(sock, rest)
    assert code == 1000
    assert stored(store, sid) == list(zip(acks, [b"one", b"two", b"three"], strict=True))


async def test_explicit_ids_that_do_not_increase_refuse_the_whole_batch(
    loop_engine: EngineProcess, loop_token: str, store: redis.Redis, sid: str
) -> None:
    header = json.dumps([[sid, "5-0", 0], [sid, "3-0", 1], [sid, "9-0", 2]])
    result = await push(
        url(loop_engine, loop_token, sid, batch=True, ack=True), [header, b"abc"], wait_close=True
    )
    assert result.close_code == 1007
    assert "increase" in result.close_reason
    assert store.xlen(sid) == 0
