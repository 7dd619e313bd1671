"""Commands sent framed already (the cluster's resends, engine/redis/resend.py)
count as in flight on their connection until answered, as XADD payloads do:
producers writing to the same node wait while a resharding's resends queue up."""

from __future__ import annotations

import asyncio
import functools

import redis

from engine._core import RedisPipe, RespWriter
from engine.redis.link import RedisAddress
from tests.inprocess import run

PAYLOAD = b"r" * 100_000
HIGH_WATER = 50_000


def framed_xadd(key: bytes) -> bytes:
    writer = RespWriter()
    writer.xadd(key, b"*", PAYLOAD, 1000)
    return b"".join(writer.take())


def test_raw_commands_count_as_in_flight_until_answered(redis_url: str, store: redis.Redis, sid: str) -> None:
    async def main() -> None:
        factory = functools.partial(RedisPipe, high_water=HIGH_WATER, low_water=HIGH_WATER // 2)
        connection = await RedisAddress(redis_url).open(factory)
        try:
            command = framed_xadd(sid.encode())
            store.execute_command("CLIENT", "PAUSE", "300", "WRITE")  # the XADD waits
            replies = connection.send_raw(command, 1)
            assert connection.in_flight_bytes == len(command)
            drained = asyncio.ensure_future(connection.drained())
            await asyncio.sleep(0.1)
            assert not drained.done()  # above the high-water mark: senders wait
            entry_id, *_ = await asyncio.wait_for(replies, 10)
            await asyncio.wait_for(drained, 10)
            assert connection.in_flight_bytes == 0
            assert store.xrange(sid) == [(entry_id, {b"d": PAYLOAD})]
        finally:
            store.execute_command("CLIENT", "UNPAUSE")
            connection.close()

    run("uvloop", main)
