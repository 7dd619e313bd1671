"""WebSocket pull end to end through a real engine and Redis: every option; the
engine runs on uvloop and on plain asyncio."""

from __future__ import annotations

import asyncio
import itertools
import json
import time

import pytest
import redis
import websockets
from websockets.exceptions import ConnectionClosedOK, InvalidStatus

from engine.launcher import EngineProcess
from tests.pulling import collect, connect, new_sid, nothing_within, step, unpack
from tests.wsraw import handshake, read_close_frame


@pytest.fixture(scope="module")
def token(loop_token: str) -> str:
    return loop_token


@pytest.fixture(scope="module")
def engine(loop_engine: EngineProcess) -> EngineProcess:
    return loop_engine


def fill(store: redis.Redis, sid: str, n: int, start: int = 0, size: int = 0) -> list[str]:
    pipe = store.pipeline(transaction=False)
    for i in range(start, start + n):
        pipe.xadd(sid, {"d": f"{sid}:{i}:".encode().ljust(size, b".")})
    return [entry_id.decode() for entry_id in pipe.execute()]


def payload(sid: str, i: int) -> bytes:
    return f"{sid}:{i}:".encode()


# -- consecutive mode ------------------------------------------------------------


async def test_an_id_replays_every_entry_in_order_then_follows(
    engine: EngineProcess, token: str, store: redis.Redis
) -> None:
    sid = new_sid()
    ids = fill(store, sid, 40)
    async with await connect(engine.ws_url, token, sid, last_entry_id="0", count=7) as ws:
        first = await step(ws)
        assert [e[1] for e in first] == ids[:7]  # latest defaults to false for an id
        got = first + await collect(ws, 33)
        ids += fill(store, sid, 25, start=40)
        got += await collect(ws, 25)
    assert [e[1] for e in got] == ids
    assert [e[2] for e in got] == [payload(sid, i) for i in range(65)]


async def test_a_replay_longer_than_the_feeds_ring_has_no_gaps(
    engine: EngineProcess, token: str, store: redis.Redis
) -> None:
    sid = new_sid()
    ids = fill(store, sid, 3000)
    async with await connect(engine.ws_url, token, sid, last_entry_id=ids[99], count=500) as ws:
        got = await collect(ws, 2900)
    assert [e[1] for e in got] == ids[100:]


async def test_consecutive_mode_while_entries_arrive(
    engine: EngineProcess, token: str, store: redis.Redis
) -> None:
    sid = new_sid()
    async with await connect(engine.ws_url, token, sid, latest="false", count=3) as ws:
        await asyncio.sleep(0.2)  # "$": only entries added from now on
        ids: list[str] = []
        for burst in range(20):
            ids += fill(store, sid, 5, start=5 * burst)
            await asyncio.sleep(0.005)
        got = await collect(ws, 100)
    assert [e[1] for e in got] == ids


async def test_star_in_consecutive_mode_starts_with_the_newest(
    engine: EngineProcess, token: str, store: redis.Redis
) -> None:
    sid = new_sid()
    ids = fill(store, sid, 10)
    async with await connect(engine.ws_url, token, sid, last_entry_id="*", latest="false", count=2) as ws:
        assert [e[1] for e in await step(ws)] == ids[8:]
        more = fill(store, sid, 5, start=10)
        got = await collect(ws, 5)
    assert [e[1] for e in got] == more


# -- latest mode -----------------------------------------------------------------


async def test_dollar_follows_the_newest_entries(
    engine: EngineProcess, token: str, store: redis.Redis
) -> None:
    sid = new_sid()
    fill(store, sid, 5)
    async with await connect(engine.ws_url, token, sid) as ws:
        assert await nothing_within(ws, 0.2)  # nothing newer than "$" yet
        (new,) = fill(store, sid, 1, start=5)
        assert await step(ws) == [(sid, new, payload(sid, 5))]


async def test_star_sends_the_newest_count_at_once(
    engine: EngineProcess, token: str, store: redis.Redis
) -> None:
    sid = new_sid()
    ids = fill(store, sid, 10)
    async with await connect(engine.ws_url, token, sid, last_entry_id="*", count=3) as ws:
        assert [e[1] for e in await step(ws)] == ids[7:]


async def test_latest_mode_skips_what_a_slow_client_missed(
    engine: EngineProcess, token: str, store: redis.Redis
) -> None:
    sid = new_sid()
    async with await connect(engine.ws_url, token, sid, ack="true", count=2) as ws:
        await asyncio.sleep(0.2)
        (first,) = fill(store, sid, 1)
        assert [e[1] for e in await step(ws)] == [first]
        ids = fill(store, sid, 10, start=1)  # while the client holds its ack
        await asyncio.sleep(0.1)
        await ws.send("next")
        assert [e[1] for e in await step(ws)] == ids[-2:]


async def test_latest_with_an_explicit_id(engine: EngineProcess, token: str, store: redis.Redis) -> None:
    sid = new_sid()
    ids = fill(store, sid, 10)
    async with await connect(engine.ws_url, token, sid, last_entry_id=ids[2], latest="true", count=3) as ws:
        assert [e[1] for e in await step(ws)] == ids[7:]


# -- several streams ---------------------------------------------------------------


async def test_several_streams_in_path_order(engine: EngineProcess, token: str, store: redis.Redis) -> None:
    a, b = new_sid("b"), new_sid("a")  # path order, not sorted order
    ids_a, ids_b = fill(store, a, 3), fill(store, b, 3)
    async with await connect(engine.ws_url, token, [a, b], last_entry_id="0", count=2) as ws:
        assert [(e[0], e[1]) for e in await step(ws)] == [
            (a, ids_a[0]),
            (a, ids_a[1]),
            (b, ids_b[0]),
            (b, ids_b[1]),
        ]
        assert [(e[0], e[1]) for e in await step(ws)] == [(a, ids_a[2]), (b, ids_b[2])]
        (new_b,) = fill(store, b, 1, start=3)
        assert [(e[0], e[1]) for e in await step(ws)] == [(b, new_b)]


async def test_one_cursor_per_stream(engine: EngineProcess, token: str, store: redis.Redis) -> None:
    a, b = new_sid("a"), new_sid("b")
    ids_a, _ = fill(store, a, 4), fill(store, b, 4)
    cursor = f"{ids_a[1]}+$"
    async with await connect(engine.ws_url, token, [a, b], last_entry_id=cursor, count=10) as ws:
        assert [e[1] for e in await step(ws)] == ids_a[2:]
        (new_b,) = fill(store, b, 1, start=4)
        assert [e[1] for e in await step(ws)] == [new_b]


async def test_non_ascii_stream_ids_in_step_headers(
    engine: EngineProcess, token: str, store: redis.Redis
) -> None:
    sid = new_sid("caméra-视频")
    ids = fill(store, sid, 2)
    async with await connect(engine.ws_url, token, sid, last_entry_id="0", count=2) as ws:
        header = await ws.recv()
        assert isinstance(header, str) and header.isascii() and "\\u" in header
        assert json.loads(header) == [[sid, ids[0], 0], [sid, ids[1], len(payload(sid, 0))]]


# -- time_sync_id ------------------------------------------------------------------


@pytest.mark.parametrize("sync", ["name", "index", None])
async def test_time_sync_moves_every_cursor_to_the_sync_stream(
    engine: EngineProcess, token: str, store: redis.Redis, sync: str | None
) -> None:
    clock, other = new_sid("clock"), new_sid("other")
    for ms in (100, 200):
        store.xadd(clock, {"d": b"c%d" % ms}, id=f"{ms}-0")
    for ms in (50, 60, 150, 250):
        store.xadd(other, {"d": b"o%d" % ms}, id=f"{ms}-0")
    time_sync_id = {"name": clock, "index": "0", None: None}[sync]
    async with await connect(
        engine.ws_url, token, [clock, other], last_entry_id="0", ack="true", time_sync_id=time_sync_id
    ) as ws:
        assert [e[1] for e in await step(ws)] == ["100-0", "50-0"]
        await ws.send("ack")
        second = [e[1] for e in await step(ws)]
        await ws.send("ack")
        third = [e[1] for e in await step(ws)]
    if sync is None:
        assert (second, third) == (["200-0", "60-0"], ["150-0"])
    else:
        # after step 1 both cursors are at 100-0: "other" skips 60-0
        assert (second, third) == (["200-0", "150-0"], ["250-0"])


# -- pacing ------------------------------------------------------------------------


async def test_ack_paces_steps(engine: EngineProcess, token: str, store: redis.Redis) -> None:
    sid = new_sid()
    ids = fill(store, sid, 3)
    async with await connect(engine.ws_url, token, sid, last_entry_id="0", ack="true") as ws:
        assert [e[1] for e in await step(ws)] == ids[:1]
        assert await nothing_within(ws, 0.3)
        await ws.send(b"any message")
        assert [e[1] for e in await step(ws)] == ids[1:2]
        assert await nothing_within(ws, 0.2)
        await ws.send("ok")
        assert [e[1] for e in await step(ws)] == ids[2:]


async def test_rate_limit_spaces_steps_without_blocking_others(
    engine: EngineProcess, token: str, store: redis.Redis
) -> None:
    sid = new_sid()
    ids = fill(store, sid, 5)
    async with (
        await connect(engine.ws_url, token, sid, last_entry_id="0", rate_limit="0.1") as slow,
        await connect(engine.ws_url, token, sid, last_entry_id="0") as fast,
    ):
        started = time.monotonic()
        assert [e[1] for e in await collect(fast, 5, timeout=2)] == ids
        fast_done = time.monotonic() - started
        times = []
        got = []
        for _ in range(5):
            got += await step(slow)
            times.append(time.monotonic())
    assert [e[1] for e in got] == ids
    assert fast_done < 0.3
    gaps = [b - a for a, b in itertools.pairwise(times)]
    assert min(gaps) > 0.08, gaps


async def test_max_fps_delays_consecutive_steps(
    engine: EngineProcess, token: str, store: redis.Redis
) -> None:
    sid = new_sid()
    ids = fill(store, sid, 6)
    started = time.monotonic()
    async with await connect(engine.ws_url, token, sid, last_entry_id="0", max_fps="20") as ws:
        got = await collect(ws, 6)
    assert [e[1] for e in got] == ids
    assert time.monotonic() - started > 0.24  # 5 gaps of 50 ms


async def test_max_fps_skips_in_latest_mode(engine: EngineProcess, token: str, store: redis.Redis) -> None:
    sid = new_sid()
    async with await connect(engine.ws_url, token, sid, max_fps="10") as ws:
        await asyncio.sleep(0.1)
        steps: list[list[tuple[str, str, bytes]]] = []

        async def read() -> None:
            while True:
                steps.append(await step(ws))

        reader = asyncio.create_task(read())
        ids: list[str] = []
        for i in range(100):  # ~1 s at 100 entries/s
            ids += fill(store, sid, 1, start=i)
            await asyncio.sleep(0.01)
        await asyncio.sleep(0.15)
        reader.cancel()
    assert 5 <= len(steps) <= 14, len(steps)
    assert all(len(s) == 1 for s in steps)
    assert steps[-1][0][1] == ids[-1]  # the newest is never skipped


# -- message forms -----------------------------------------------------------------


async def test_onebyone_sends_a_pair_per_entry(engine: EngineProcess, token: str, store: redis.Redis) -> None:
    sid = new_sid()
    ids = fill(store, sid, 3)
    async with await connect(engine.ws_url, token, sid, last_entry_id="0", count=3, onebyone="true") as ws:
        for i in range(3):
            assert await step(ws) == [(sid, ids[i], payload(sid, i))]


async def test_header_0_sends_raw_entries(engine: EngineProcess, token: str, store: redis.Redis) -> None:
    sid = new_sid()
    fill(store, sid, 3)
    async with await connect(engine.ws_url, token, sid, last_entry_id="0", count=3, header="0") as ws:
        messages = [await asyncio.wait_for(ws.recv(), 5) for _ in range(3)]
        assert messages == [payload(sid, i) for i in range(3)]
        fill(store, sid, 1, start=3)
        assert await asyncio.wait_for(ws.recv(), 5) == payload(sid, 3)


async def test_large_entries_in_one_step(engine: EngineProcess, token: str, store: redis.Redis) -> None:
    sid = new_sid()
    sizes = [70_000, 5, 1_500_000, 0]
    ids = [store.xadd(sid, {"d": bytes([i % 256]) * size}).decode() for i, size in enumerate(sizes)]
    async with await connect(engine.ws_url, token, sid, last_entry_id="0", count=4) as ws:
        got = await step(ws)
    assert [e[1] for e in got] == ids
    assert [e[2] for e in got] == [bytes([i % 256]) * size for i, size in enumerate(sizes)]


# -- timeout and closing -------------------------------------------------------------


async def test_timeout_closes_normally_when_no_data_comes(engine: EngineProcess, token: str) -> None:
    started = time.monotonic()
    async with await connect(engine.ws_url, token, new_sid(), timeout="300") as ws:
        with pytest.raises(ConnectionClosedOK):
            await asyncio.wait_for(ws.recv(), 5)
    assert ws.close_code == 1000
    assert 0.25 < time.monotonic() - started < 2


async def test_timeout_counts_from_the_last_data(
    engine: EngineProcess, token: str, store: redis.Redis
) -> None:
    sid = new_sid()
    async with await connect(engine.ws_url, token, sid, timeout="400") as ws:
        for i in range(4):  # every 200 ms: never 400 ms without data
            await asyncio.sleep(0.2)
            fill(store, sid, 1, start=i)
            await step(ws)
        started = time.monotonic()
        with pytest.raises(ConnectionClosedOK):
            await asyncio.wait_for(ws.recv(), 5)
    assert 0.3 < time.monotonic() - started < 1.5


async def test_the_client_can_close(engine: EngineProcess, token: str) -> None:
    ws = await connect(engine.ws_url, token, new_sid())
    await ws.close(1000, "bye")
    assert ws.close_code == 1000


def test_an_empty_close_frame_is_answered_with_1000(engine: EngineProcess, token: str) -> None:
    # RFC 6455 §7.4: a close without a status code is answered with a real code,
    # never 0 (websockets clients fail such a close with 1002).
    status, _, rest, sock = handshake(engine.port, f"/data/{new_sid()}/pull?token={token}")
    with sock:
        assert status == 101
        sock.sendall(b"\x88\x80" + b"\x00\x00\x00\x00")  # FIN close, masked, empty payload
        code, _ = read_close_frame(sock, rest)
    assert code == 1000


async def test_a_stream_created_after_the_socket(
    engine: EngineProcess, token: str, store: redis.Redis
) -> None:
    sid = new_sid()
    async with await connect(engine.ws_url, token, sid, last_entry_id="*") as ws:
        assert await nothing_within(ws, 0.2)
        ids = fill(store, sid, 1)
        assert [e[1] for e in await step(ws)] == ids


async def test_pushed_entries_come_out_of_pull(engine: EngineProcess, token: str) -> None:
    sid = new_sid()
    async with await connect(engine.ws_url, token, sid, latest="false") as puller:
        await asyncio.sleep(0.1)
        async with websockets.connect(f"{engine.ws_url}/data/{sid}/push?ack=true&token={token}") as pusher:
            acked = []
            for i in range(20):
                await pusher.send(b"frame-%d" % i)
                acked.append(await pusher.recv())
        got = await collect(puller, 20)
    assert [e[1] for e in got] == acked
    assert [e[2] for e in got] == [b"frame-%d" % i for i in range(20)]


async def test_a_key_that_is_not_a_stream_closes_1011(
    engine: EngineProcess, token: str, store: redis.Redis
) -> None:
    sid = new_sid()
    store.set(sid, b"not a stream")
    async with await connect(engine.ws_url, token, sid) as ws:
        with pytest.raises(websockets.ConnectionClosedError):
            await asyncio.wait_for(ws.recv(), 5)
    assert ws.close_code == 1011
    assert "WRONGTYPE" in (ws.close_reason or "")


# -- bad queries -------------------------------------------------------------------


@pytest.mark.parametrize(
    ("query", "detail"),
    [
        ({"count": "0"}, "count"),
        ({"count": "many"}, "count"),
        ({"last_entry_id": "yesterday"}, "last_entry_id"),
        ({"last_entry_id": "0+0+0"}, "3 ids for 2 streams"),
        ({"latest": "maybe"}, "latest"),
        ({"timeout": "-5"}, "timeout"),
        ({"timeout": "soon"}, "timeout"),
        ({"onebyone": "2"}, "onebyone"),
        ({"ack": "x"}, "ack"),
        ({"header": "none"}, "header"),
        ({"time_sync_id": "zzz"}, "time_sync_id"),
        ({"time_sync_id": "2"}, "time_sync_id"),
        ({"rate_limit": "fast"}, "rate_limit"),
        ({"rate_limit": "inf"}, "rate_limit"),
        ({"max_fps": "0"}, "max_fps"),
        ({"count": "10001"}, "at most 10000"),
    ],
)
async def test_bad_query_values_are_400_at_the_handshake(
    engine: EngineProcess, token: str, query: dict[str, str], detail: str
) -> None:
    with pytest.raises(InvalidStatus) as refused:
        await connect(engine.ws_url, token, ["a", "b"], **query)
    response = refused.value.response
    assert response.status_code == 400
    assert detail in json.loads(response.body)["detail"]


def test_a_bad_stream_id_closes_1008(engine: EngineProcess, token: str) -> None:
    status, _, rest, sock = handshake(engine.port, f"/data/XMETA:cam/pull?token={token}")
    with sock:
        assert status == 101
        code, text = read_close_frame(sock, rest)
    assert code == 1008
    assert "reserved prefix" in text


def test_unpack_of_an_empty_step() -> None:
    assert unpack("[]", b"") == []


async def test_latest_count_beyond_the_feeds_ring(
    engine: EngineProcess, token: str, store: redis.Redis
) -> None:
    sid = new_sid()
    ids = fill(store, sid, 1500)
    async with await connect(engine.ws_url, token, sid, last_entry_id="*", count=1200) as ws:
        assert [e[1] for e in await step(ws)] == ids[300:]
        more = fill(store, sid, 5, start=1500)
        assert [e[1] for e in await collect(ws, 5)] == more
