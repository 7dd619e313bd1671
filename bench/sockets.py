"""What a crowd of idle WebSockets costs one engine process, and whether it
still serves with them open.

    python -m bench.sockets --connections 10000 [--streams N] [--kind pull|push]
                            [--rate 1000] [--seconds 10]

Starts its own Redis and engine (bench.target), raising the descriptor limit
to the hard limit first (both inherit it), and reports:
- engine RSS, descriptors and Redis connections per socket once they are open,
  and how long opening them took;
- /ping latency with them open (p50, p99 over 200 requests);
- pull: one push that carries an entry for every followed stream, and how
  long until every socket had its entry (p50, p99, max);
- pull: ``--rate`` entries/s spread over the streams for ``--seconds``: push
  to pull latency, and the Redis and engine CPU per delivered entry (the cost
  of following: notifications and the reads they trigger);
- engine RSS after every socket closed, against before they opened (with
  ``--rounds 2`` twice on one engine: what the first round left behind once
  is warm-up, what grows again is a leak).
Sockets on stream ``i % streams``; each pull socket follows one stream.
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import http.client
import json
import random
import resource
import tempfile
import time
from pathlib import Path
from urllib.parse import urlsplit

import psutil
import redis
import uvloop
from picows import WSFrame, WSListener, WSMsgType, WSTransport, ws_connect

from bench.harness import STAMP, percentiles
from bench.monitor import cpu_seconds, process_tree, rss_bytes
from bench.target import OwnEngine

# Sockets opened at once: the engine's accept backlog is 2048 by default.
OPEN_AT_ONCE = 500
# Past the pull feeds' linger (5 s) and the memory trimmer's checks (every 5 s).
SETTLE_AFTER_CLOSE = 16.0
PING_REQUESTS = 200
# A rate phase pushes one batch every this many seconds.
BATCH_EVERY = 0.01


def raise_descriptor_limit() -> int:
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if hard > soft or hard == resource.RLIM_INFINITY:
        resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    return resource.getrlimit(resource.RLIMIT_NOFILE)[0]


class Follower(WSListener):
    """A pull socket: the latency of every entry from its send stamp."""

    def __init__(self) -> None:
        self.latencies_ns: list[int] = []
        self.offsets: list[int] | None = None
        self.arrived = asyncio.Event()

    def on_ws_frame(self, transport: WSTransport, frame: WSFrame) -> None:
        now = time.perf_counter_ns()
        if frame.msg_type == WSMsgType.TEXT:
            self.offsets = [item[2] for item in json.loads(frame.get_payload_as_ascii_text())]
        elif frame.msg_type == WSMsgType.BINARY:
            payload = frame.get_payload_as_memoryview()
            for start in self.offsets or (0,):
                sent, _ = STAMP.unpack_from(payload, start)
                self.latencies_ns.append(now - sent)
            self.arrived.set()
        elif frame.msg_type == WSMsgType.CLOSE:
            transport.disconnect()


class Idle(WSListener):
    """A push socket that sends nothing."""


class Producer(WSListener):
    """Pushes `*` batches: one header naming each entry's stream, one blob."""

    transport: WSTransport

    def on_ws_connected(self, transport: WSTransport) -> None:
        self.transport = transport

    def push(self, sids: list[str], entry_size: int) -> None:
        now = time.perf_counter_ns()
        payloads = [STAMP.pack(now, i).ljust(entry_size, b".") for i in range(len(sids))]
        header = [[sid, i * entry_size] for i, sid in enumerate(sids)]
        self.transport.send(WSMsgType.TEXT, json.dumps(header).encode())
        self.transport.send(WSMsgType.BINARY, b"".join(payloads))


async def open_sockets(urls: list[str], factory: type[WSListener]) -> list[tuple[WSTransport, WSListener]]:
    opened: list[tuple[WSTransport, WSListener]] = []
    # The loader's own cyclic GC rescans every socket it holds, more often the
    # more it holds: it took most of the loader's time opening 18,000.
    collecting = gc.isenabled()
    gc.disable()
    try:
        for start in range(0, len(urls), OPEN_AT_ONCE):
            opened += await asyncio.gather(
                *(ws_connect(factory, url) for url in urls[start : start + OPEN_AT_ONCE])
            )
    finally:
        if collecting:
            gc.enable()
    return opened


def ping_latencies(base_url: str) -> dict[str, float]:
    where = urlsplit(base_url)
    connection = http.client.HTTPConnection(where.hostname or "127.0.0.1", where.port, timeout=10)
    samples = []
    for _ in range(PING_REQUESTS):
        started = time.perf_counter_ns()
        connection.request("GET", "/ping")
        response = connection.getresponse()
        response.read()
        assert response.status == 200, response.status
        samples.append(time.perf_counter_ns() - started)
    connection.close()
    return percentiles(samples)


def engine_connections(store: redis.Redis) -> int:
    return sum(1 for client in store.client_list() if client["name"].startswith("ptg-engine-"))


def per_socket(label: str, before: float, after: float, sockets: int, unit: str = "") -> str:
    return f"{label}: {(after - before) / sockets:.2f}{unit} per socket ({before:.0f} -> {after:.0f})"


async def deliver_once(producer: Producer, followers: list[Follower], sids: list[str]) -> dict[str, float]:
    """One batch with an entry per stream; the time until each follower had it."""
    for follower in followers:
        follower.latencies_ns.clear()
        follower.arrived.clear()
    producer.push(sids, 64)
    await asyncio.wait_for(asyncio.gather(*(f.arrived.wait() for f in followers)), 60)
    return percentiles([f.latencies_ns[0] for f in followers])


async def follow_at_rate(
    target: OwnEngine,
    producer: Producer,
    followers: list[Follower],
    sids: list[str],
    rate: int,
    seconds: float,
) -> dict[str, float]:
    for follower in followers:
        follower.latencies_ns.clear()
    processes = {"engine": process_tree(target.pid), "redis": [psutil.Process(target.redis_pid or 0)]}
    cpu_before = {name: cpu_seconds(tree) for name, tree in processes.items()}
    loop = asyncio.get_running_loop()
    started = loop.time()
    sent = 0
    while (elapsed := loop.time() - started) < seconds:
        due = int(rate * elapsed) - sent
        if due > 0:
            producer.push(random.choices(sids, k=due), 64)
            sent += due
        await asyncio.sleep(BATCH_EVERY)
    deadline = loop.time() + 10
    while sum(len(f.latencies_ns) for f in followers) < sent and loop.time() < deadline:
        await asyncio.sleep(0.05)
    cpu = {name: cpu_seconds(tree) - cpu_before[name] for name, tree in processes.items()}
    delivered = sum(len(f.latencies_ns) for f in followers)
    wall = loop.time() - started
    result = percentiles([ns for f in followers for ns in f.latencies_ns])
    result |= {
        "sent": sent,
        "delivered": delivered,
        "redis CPU % of a core": 100 * cpu["redis"] / wall,
        "redis CPU us per entry": 1e6 * cpu["redis"] / max(delivered, 1),
        "engine CPU % of a core": 100 * cpu["engine"] / wall,
        "engine CPU us per entry": 1e6 * cpu["engine"] / max(delivered, 1),
    }
    return result


async def run(options: argparse.Namespace) -> None:
    limit = raise_descriptor_limit()
    n, streams = options.connections, options.streams or options.connections
    if limit < n + 1000:
        print(f"note: the descriptor limit is {limit}; the engine needs one per socket and more")
    with (
        tempfile.TemporaryDirectory(prefix="ptg-sockets-") as directory,
        OwnEngine(Path(directory)) as target,
    ):
        assert target.engine is not None
        token = target.engine.token()
        engine = process_tree(target.pid)
        store = redis.Redis.from_url(target.redis_url)
        run_id = f"{random.randrange(16**6):06x}"
        sids = [f"sock-{run_id}-{i}" for i in range(streams)]
        ws = target.engine.ws_url
        if options.kind == "pull":
            urls = [f"{ws}/data/{sids[i % streams]}/pull?token={token}&latest=false" for i in range(n)]
        else:
            urls = [f"{ws}/data/{sids[i % streams]}/push?token={token}" for i in range(n)]
        await asyncio.sleep(1)
        for round_ in range(1, options.rounds + 1):
            if options.rounds > 1:
                print(f"round {round_}")
            rss_before, fds_before = rss_bytes(engine), engine[0].num_fds()
            clients_before = engine_connections(store)
            started = time.perf_counter()
            opened = await open_sockets(urls, Follower if options.kind == "pull" else Idle)
            open_seconds = time.perf_counter() - started
            await asyncio.sleep(2)
            rss_open, fds_open = rss_bytes(engine), engine[0].num_fds()
            print(f"{n} {options.kind} sockets on {streams} streams, opened in {open_seconds:.2f} s")
            print("  " + per_socket("engine RSS", rss_before / 1024, rss_open / 1024, n, " KiB"))
            print("  " + per_socket("engine descriptors", fds_before, fds_open, n))
            print(f"  engine's Redis connections: {clients_before} -> {engine_connections(store)}")
            ping = ping_latencies(target.base_url)
            print(f"  /ping with them open: p50 {ping['p50 ms']:.2f} ms, p99 {ping['p99 ms']:.2f} ms")
            if options.kind == "pull":
                followers = [listener for _, listener in opened if isinstance(listener, Follower)]
                (producer_transport, producer), *_ = await open_sockets(
                    [f"{ws}/data/*/push?token={token}"], Producer
                )
                assert isinstance(producer, Producer)
                once = await deliver_once(
                    producer, followers, [sids[i % streams] for i in range(min(n, streams))]
                )
                print(
                    f"  one push to every stream reached every socket: p50 {once['p50 ms']:.1f} ms, "
                    f"p99 {once['p99 ms']:.1f} ms, max {once['max ms']:.1f} ms"
                )
                if options.rate:
                    steady = await follow_at_rate(
                        target, producer, followers, sids, options.rate, options.seconds
                    )
                    print(
                        f"  {options.rate} entries/s over {streams} streams for {options.seconds:.0f} s: "
                        f"{steady['delivered']}/{steady['sent']} delivered, p50 {steady['p50 ms']:.2f} ms, "
                        f"p99 {steady['p99 ms']:.2f} ms, max {steady['max ms']:.1f} ms"
                    )
                    print(
                        f"  following costs Redis {steady['redis CPU % of a core']:.1f}% of a core "
                        f"({steady['redis CPU us per entry']:.1f} us per delivered entry); the engine "
                        f"{steady['engine CPU % of a core']:.1f}% ({steady['engine CPU us per entry']:.1f} us)"
                    )
                producer_transport.disconnect()
            for transport, _ in opened:
                transport.disconnect()
            await asyncio.sleep(SETTLE_AFTER_CLOSE)
            rss_closed = rss_bytes(engine)
            change = 100 * (rss_closed - rss_before) / rss_before
            print(
                f"  after close: engine RSS {rss_closed / 2**20:.1f} MiB ({change:+.1f}% of before), "
                f"descriptors {engine[0].num_fds()}, Redis connections {engine_connections(store)}"
            )


def parse(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--connections", type=int, default=10_000, help="sockets to open (default 10000)")
    parser.add_argument("--streams", type=int, default=0, help="distinct streams (default: one per socket)")
    parser.add_argument("--kind", choices=["pull", "push"], default="pull", help="socket kind (default pull)")
    parser.add_argument("--rate", type=int, default=1000, help="entries/s in the following phase (0: skip)")
    parser.add_argument("--seconds", type=float, default=10.0, help="length of the following phase")
    parser.add_argument(
        "--rounds",
        type=int,
        default=1,
        help="open, measure, close this many times (RSS after a second round shows leaks)",
    )
    return parser.parse_args(argv)


def main() -> None:
    uvloop.run(run(parse()))


if __name__ == "__main__":
    main()
