"""What every read-path benchmark needs: its own Redis and engine (bench.target),
picows clients for push and pull, percentiles and the CPU the server used."""

from __future__ import annotations

import asyncio
import contextlib
import json
import struct
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import psutil
from picows import WSFrame, WSListener, WSMsgType, WSTransport, ws_connect

from bench.monitor import cpu_seconds, process_tree
from bench.target import OwnEngine

# A benchmark entry starts with its send time (perf_counter_ns) and its sequence number.
STAMP = struct.Struct("<qq")


@contextlib.contextmanager
def own_engine() -> Iterator[OwnEngine]:
    """A private redis-server and one `python -m engine` on a free port (bench.target)."""
    with tempfile.TemporaryDirectory(prefix="ptg-bench-") as directory, OwnEngine(Path(directory)) as target:
        yield target


class CpuMeter:
    """CPU the engine and Redis used between ``start()`` and ``stop()``."""

    def __init__(self, target: OwnEngine) -> None:
        assert target.redis_pid is not None
        self.processes = {"engine": process_tree(target.pid), "redis": [psutil.Process(target.redis_pid)]}
        self.started: dict[str, float] = {}
        self.wall = 0.0

    def start(self) -> None:
        self.started = {name: cpu_seconds(tree) for name, tree in self.processes.items()}
        self.wall = time.perf_counter()

    def stop(self) -> dict[str, float]:
        """Share of one core each used, in percent."""
        wall = time.perf_counter() - self.wall
        return {
            f"{name} CPU %": 100 * (cpu_seconds(tree) - self.started[name]) / wall
            for name, tree in self.processes.items()
        }


def stamped(size: int, seq: int) -> bytes:
    """A ``size``-byte entry carrying the time now and ``seq``."""
    return STAMP.pack(time.perf_counter_ns(), seq).ljust(size, b".")


QUANTILES = {"p50 ms": 0.50, "p90 ms": 0.90, "p99 ms": 0.99, "p99.9 ms": 0.999}


def quantile(ordered: list[int], q: float) -> float:
    """The ``q`` quantile of sorted samples, interpolated linearly between the two
    nearest ranks (numpy's default "linear" method, Hyndman and Fan's type 7):
    with 100 samples p99 lies between the 99th and the 100th, not on the maximum."""
    position = q * (len(ordered) - 1)
    below = int(position)
    above = min(below + 1, len(ordered) - 1)
    return ordered[below] + (ordered[above] - ordered[below]) * (position - below)


def percentiles(samples_ns: list[int]) -> dict[str, float]:
    """p50, p90, p99, p99.9 and max in milliseconds, and the sample count, keyed
    as the reports print them; from every sample."""
    if not samples_ns:
        return {**dict.fromkeys(QUANTILES, float("nan")), "max ms": float("nan"), "samples": 0}
    ordered = sorted(samples_ns)
    result: dict[str, float] = {name: quantile(ordered, q) / 1e6 for name, q in QUANTILES.items()}
    return {**result, "max ms": ordered[-1] / 1e6, "samples": len(ordered)}


class Pusher(WSListener):
    """A producer socket (single mode: one binary message per entry)."""

    transport: WSTransport

    def on_ws_connected(self, transport: WSTransport) -> None:
        self.transport = transport

    def send(self, entry: bytes) -> None:
        self.transport.send(WSMsgType.BINARY, entry)


class Puller(WSListener):
    """A consumer socket that stamps every entry as it arrives: the latency from
    the entry's send time, and a gap whenever a sequence number is skipped."""

    def __init__(self, with_header: bool = True) -> None:
        self.latencies_ns: list[int] = []
        self.received = 0
        self.gaps = 0
        self.last_seq = -1
        self.with_header = with_header
        self.offsets: list[int] | None = None
        self.closed = asyncio.get_running_loop().create_future()

    def on_ws_frame(self, transport: WSTransport, frame: WSFrame) -> None:
        now = time.perf_counter_ns()
        if frame.msg_type == WSMsgType.TEXT:
            header = frame.get_payload_as_ascii_text()
            # One entry per step is the common case: skip parsing its header.
            self.offsets = None if header.count("[") == 2 else [item[2] for item in json.loads(header)]
            return
        if frame.msg_type == WSMsgType.CLOSE:
            transport.disconnect()
            return
        if frame.msg_type != WSMsgType.BINARY:
            return
        payload = frame.get_payload_as_memoryview()
        for start in self.offsets or (0,):
            sent, seq = STAMP.unpack_from(payload, start)
            self.latencies_ns.append(now - sent)
            if seq != self.last_seq + 1:
                self.gaps += 1
            self.last_seq = seq
            self.received += 1

    def on_ws_disconnected(self, transport: WSTransport) -> None:
        if not self.closed.done():
            self.closed.set_result(None)


async def connect(url: str, listener: Any) -> WSTransport:
    transport, _ = await ws_connect(lambda: listener, url, max_frame_size=1 << 26)
    return transport


def print_table(title: str, rows: dict[str, Any]) -> None:
    print(title)
    for name, value in rows.items():
        text = f"{value:.3f}" if isinstance(value, float) else str(value)
        print(f"  {name:<28} {text}")
