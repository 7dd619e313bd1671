"""What every read-path benchmark needs: its own Redis and engine (started as the
tests start them), picows clients for push and pull, and percentiles."""

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

from engine.redis.embedded import EmbeddedRedis
from tests.conftest import EngineProcess

# A benchmark entry starts with its send time (perf_counter_ns) and its sequence number.
STAMP = struct.Struct("<qq")


@contextlib.contextmanager
def engine_and_redis(log_level: str = "warning") -> Iterator[tuple[EngineProcess, EmbeddedRedis]]:
    """A private redis-server and one `python -m engine` on free ports."""
    with tempfile.TemporaryDirectory(prefix="ptg-bench-") as directory:
        redis = EmbeddedRedis(Path(directory) / "redis").start()
        engine = EngineProcess(Path(directory) / "engine", redis.url, ["--log-level", log_level])
        try:
            engine.start()
            yield engine, redis
        finally:
            if engine.process is not None:
                engine.stop()
            redis.stop()


class CpuMeter:
    """CPU seconds the engine and Redis used between ``start()`` and ``stop()``."""

    def __init__(self, engine: EngineProcess, redis: EmbeddedRedis) -> None:
        assert engine.process is not None and redis.process is not None
        self.processes = {
            "engine": psutil.Process(engine.process.pid),
            "redis": psutil.Process(redis.process.pid),
        }
        self.started: dict[str, float] = {}
        self.wall = 0.0

    def _used(self) -> dict[str, float]:
        return {name: sum(p.cpu_times()[:2]) for name, p in self.processes.items()}

    def start(self) -> None:
        self.started = self._used()
        self.wall = time.perf_counter()

    def stop(self) -> dict[str, float]:
        """Share of one core each used, in percent."""
        used, wall = self._used(), time.perf_counter() - self.wall
        return {f"{name} CPU %": 100 * (used[name] - self.started[name]) / wall for name in used}


def stamped(size: int, seq: int) -> bytes:
    """A ``size``-byte entry carrying the time now and ``seq``."""
    return STAMP.pack(time.perf_counter_ns(), seq).ljust(size, b".")


def percentiles(samples_ns: list[int]) -> dict[str, float]:
    """p50, p99 and max in milliseconds."""
    if not samples_ns:
        return {"p50": float("nan"), "p99": float("nan"), "max": float("nan")}
    ordered = sorted(samples_ns)

    def at(q: float) -> float:
        return ordered[min(len(ordered) - 1, int(q * len(ordered)))] / 1e6

    return {"p50": at(0.50), "p99": at(0.99), "max": ordered[-1] / 1e6}


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
