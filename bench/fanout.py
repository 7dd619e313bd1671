"""Fan-out: one pusher at a fixed rate (1 KiB entries carrying their send time and
a sequence number) to N consumer-mode pull sockets on one engine; delivered
entries/s, drops and latency.

    python -m bench.fanout [--pullers 200] [--rate 1000] [--seconds 3] [--count 1]

Starts its own Redis and engine. The pullers share one feed (one XREAD) in
the engine; each counts a drop for every sequence number it never saw.
"""

from __future__ import annotations

import argparse
import asyncio
import time

import uvloop

from bench.harness import CpuMeter, Puller, Pusher, connect, own_engine, percentiles, print_table
from bench.pull_latency import push_at_rate


async def main(options: argparse.Namespace) -> None:
    with own_engine() as target:
        engine = target.engine
        assert engine is not None
        token = engine.token()
        sid = "bench-fanout"
        url = f"{engine.ws_url}/data/{sid}/pull?latest=false&count={options.count}&token={token}"
        pullers = [Puller() for _ in range(options.pullers)]
        gate = asyncio.Semaphore(50)

        async def open_one(puller: Puller) -> None:
            async with gate:
                await connect(url, puller)

        await asyncio.gather(*(open_one(puller) for puller in pullers))
        pusher = Pusher()
        await connect(f"{engine.ws_url}/data/{sid}/push?token={token}", pusher)
        await asyncio.sleep(0.5)
        cpu = CpuMeter(target)
        cpu.start()
        started = time.perf_counter()
        sent = await push_at_rate(pusher.send, options.rate, options.seconds, options.size)
        push_seconds = time.perf_counter() - started
        usage = cpu.stop()
        loop = asyncio.get_running_loop()
        deadline = loop.time() + 5
        while sum(p.received for p in pullers) < sent * len(pullers) and loop.time() < deadline:
            await asyncio.sleep(0.02)
        drain_seconds = time.perf_counter() - started
        received = sum(p.received for p in pullers)
        missing = sum(sent - p.received for p in pullers)
        stats = percentiles([sample for p in pullers for sample in p.latencies_ns])
        print_table(
            f"fan-out: {options.rate:g} entries/s of {options.size} B to {options.pullers} pullers "
            f"(count={options.count}) for {options.seconds:g} s",
            {
                "entries sent": sent,
                "entries delivered": received,
                "delivered entries/s": received / drain_seconds,
                "push phase s": push_seconds,
                "all delivered after s": drain_seconds,
                "drops (never delivered)": missing,
                "gaps (sequence skipped)": sum(p.gaps for p in pullers),
                **stats,
                **usage,
            },
        )


def parse(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--pullers", type=int, default=200)
    parser.add_argument("--rate", type=float, default=1000.0, help="entries per second")
    parser.add_argument("--seconds", type=float, default=3.0)
    parser.add_argument("--size", type=int, default=1024, help="entry size in bytes (at least 16)")
    parser.add_argument("--count", type=int, default=1, help="the pullers' count (entries per step)")
    return parser.parse_args(argv)


if __name__ == "__main__":
    uvloop.run(main(parse()))
