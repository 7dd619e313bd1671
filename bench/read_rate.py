"""GET /data throughput: C keep-alive HTTP/1.1 clients asking for the latest
``count`` entries of a stream of 1 KiB entries, as fast as answers come.

    python -m bench.read_rate [--clients 4] [--count 10] [--seconds 3]

Starts its own Redis and engine. The clients are raw asyncio protocols (one
request in flight each), so that the client side costs little of the CPU.
"""

from __future__ import annotations

import argparse
import asyncio
import re
import time
from collections.abc import Callable

import redis as redis_py
import uvloop

from bench.harness import CpuMeter, own_engine, percentiles, print_table

_CONTENT_LENGTH = re.compile(rb"\r\ncontent-length:\s*(\d+)")


class KeepAliveClient(asyncio.Protocol):
    """Sends one request, reads its response (Content-Length), sends the next."""

    def __init__(self, request: bytes, stop_at: float) -> None:
        self.request = request
        self.stop_at = stop_at
        self.buffer = bytearray()
        self.sent_at = 0
        self.latencies_ns: list[int] = []
        self.statuses: dict[int, int] = {}
        self.done = asyncio.get_running_loop().create_future()
        self.transport: asyncio.Transport | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]
        self._send()

    def _send(self) -> None:
        assert self.transport is not None
        self.sent_at = time.perf_counter_ns()
        self.transport.write(self.request)

    def data_received(self, data: bytes) -> None:
        self.buffer += data
        while True:
            end = self.buffer.find(b"\r\n\r\n")
            if end < 0:
                return
            head = bytes(self.buffer[:end]).lower()
            length = int(_CONTENT_LENGTH.search(head).group(1))  # type: ignore[union-attr]
            if len(self.buffer) < end + 4 + length:
                return
            status = int(head[9:12])
            self.statuses[status] = self.statuses.get(status, 0) + 1
            del self.buffer[: end + 4 + length]
            self.latencies_ns.append(time.perf_counter_ns() - self.sent_at)
            if time.perf_counter() >= self.stop_at:
                self.done.set_result(None)
                return
            self._send()


def _factory(client: KeepAliveClient) -> Callable[[], KeepAliveClient]:
    return lambda: client


async def main(options: argparse.Namespace) -> None:
    with own_engine() as target:
        engine = target.engine
        assert engine is not None
        token = engine.token()
        sid = "bench-read"
        store = redis_py.Redis.from_url(target.redis_url)
        pipe = store.pipeline(transaction=False)
        for i in range(1000):
            pipe.xadd(sid, {"d": b"%08d" % i + b"." * (options.size - 8)})
        pipe.execute()
        request = (
            f"GET /data/{sid}?count={options.count}&last_entry_id=* HTTP/1.1\r\n"
            f"Host: 127.0.0.1:{engine.port}\r\nAuthorization: Bearer {token}\r\n\r\n"
        ).encode()
        loop = asyncio.get_running_loop()
        # A short warm-up, then the measured run.
        cpu = CpuMeter(target)
        for seconds in (0.5, options.seconds):
            cpu.start()
            stop_at = time.perf_counter() + seconds
            clients = [KeepAliveClient(request, stop_at) for _ in range(options.clients)]
            started = time.perf_counter()
            for client in clients:
                await loop.create_connection(_factory(client), "127.0.0.1", engine.port)
            await asyncio.gather(*(client.done for client in clients))
            elapsed = time.perf_counter() - started
            usage = cpu.stop()
            for client in clients:
                assert client.transport is not None
                client.transport.close()
        done = sum(len(client.latencies_ns) for client in clients)
        statuses: dict[int, int] = {}
        for client in clients:
            for status, n in client.statuses.items():
                statuses[status] = statuses.get(status, 0) + n
        stats = percentiles([sample for client in clients for sample in client.latencies_ns])
        print_table(
            f"GET /data count={options.count} ({options.size} B entries), {options.clients} clients, "
            f"{options.seconds:g} s",
            {
                "requests": done,
                "statuses": statuses,
                "requests/s": done / elapsed,
                **stats,
                **usage,
            },
        )


def parse(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--clients", type=int, default=4)
    parser.add_argument("--count", type=int, default=10)
    parser.add_argument("--seconds", type=float, default=3.0)
    parser.add_argument("--size", type=int, default=1024, help="entry size in bytes")
    return parser.parse_args(argv)


if __name__ == "__main__":
    uvloop.run(main(parse()))
