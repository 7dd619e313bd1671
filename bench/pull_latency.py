"""End-to-end latency of one pull socket: a pusher at a fixed rate, 1 KiB entries
carrying their send time, one consumer-mode puller; p50/p99/max.

    python -m bench.pull_latency [--rate 1000] [--seconds 3] [--size 1024] [--via push|redis]

Starts its own Redis and engine. ``--via push`` sends through the engine's push
socket (producer -> engine -> Redis -> engine -> consumer); ``--via redis``
writes XADDs straight to Redis (Redis -> engine -> consumer).
"""

from __future__ import annotations

import argparse
import asyncio
from pathlib import Path
from typing import Any

import uvloop

from bench.harness import (
    CpuMeter,
    Puller,
    Pusher,
    connect,
    own_engine,
    percentiles,
    print_table,
    stamped,
)
from engine._core import RespWriter
from engine.redis.link import RedisAddress

WARMUP_SECONDS = 0.5


class RawXadd(asyncio.Protocol):
    """XADDs written straight to Redis; replies are read and dropped."""

    def __init__(self) -> None:
        self.writer = RespWriter()
        self.transport: Any = None

    def connection_made(self, transport: Any) -> None:
        self.transport = transport

    def data_received(self, data: bytes) -> None:
        pass

    def call(self, *arguments: Any) -> Any:  # RedisAddress.open logs in through this
        raise NotImplementedError

    def close(self) -> None:
        self.transport.close()

    def send(self, sid: bytes, entry: bytes) -> None:
        self.writer.xadd(sid, b"*", entry, 1000)
        self.transport.writelines(self.writer.take())


async def push_at_rate(send: Any, rate: float, seconds: float, size: int, first_seq: int = 0) -> int:
    """Send ``rate`` entries a second for ``seconds``; returns how many were sent."""
    loop = asyncio.get_running_loop()
    count = int(rate * seconds)
    start = loop.time()
    for i in range(count):
        delay = start + i / rate - loop.time()
        if delay > 0:
            await asyncio.sleep(delay)
        send(stamped(size, first_seq + i))
    return count


async def main(options: argparse.Namespace) -> None:
    with own_engine() as target:
        engine = target.engine
        assert engine is not None
        token = engine.token()
        sid = "bench-latency"
        puller = Puller()
        await connect(f"{engine.ws_url}/data/{sid}/pull?latest=false&token={token}", puller)
        if options.via == "push":
            pusher = Pusher()
            await connect(f"{engine.ws_url}/data/{sid}/push?token={token}", pusher)
            send = pusher.send
        else:
            raw = RawXadd()
            address = RedisAddress(target.redis_url)
            loop = asyncio.get_running_loop()
            if address.unix_path is not None:
                await loop.create_unix_connection(lambda: raw, address.unix_path)
            else:
                await loop.create_connection(lambda: raw, address.host, address.port)

            def send(entry: bytes) -> None:
                raw.send(sid.encode(), entry)

        await asyncio.sleep(0.3)
        warm = await push_at_rate(send, options.rate, WARMUP_SECONDS, options.size)
        await asyncio.sleep(0.1)
        skip = len(puller.latencies_ns)
        cpu = CpuMeter(target)
        cpu.start()
        sent = await push_at_rate(send, options.rate, options.seconds, options.size, warm)
        usage = cpu.stop()
        loop = asyncio.get_running_loop()
        deadline = loop.time() + 2
        while puller.received < warm + sent and loop.time() < deadline:
            await asyncio.sleep(0.01)
        stats = percentiles(puller.latencies_ns[skip:])
        if options.samples:
            options.samples.write_text("".join(f"{ns / 1e6:.4f}\n" for ns in puller.latencies_ns[skip:]))
        print_table(
            f"pull latency: {options.rate:g} entries/s of {options.size} B for {options.seconds:g} s, via {options.via}",
            {
                "entries sent": sent,
                "entries received": puller.received - skip,
                "gaps (sequence skipped)": puller.gaps,
                **stats,
                **usage,
            },
        )


def parse(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--rate", type=float, default=1000.0, help="entries per second")
    parser.add_argument("--seconds", type=float, default=3.0)
    parser.add_argument("--size", type=int, default=1024, help="entry size in bytes (at least 16)")
    parser.add_argument("--via", choices=["push", "redis"], default="push")
    parser.add_argument("--samples", type=Path, help="write every latency here, in ms, one per line")
    return parser.parse_args(argv)


if __name__ == "__main__":
    uvloop.run(main(parse()))
