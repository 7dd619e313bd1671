"""The engine's WebSocket endpoints served in-process, on uvloop or on plain asyncio:
a picows server whose listeners come from the engine's own endpoint factories (no
tokens), with a real Runtime on the tests' Redis. Tests inject faults, small feed
sizes and other shard maps here."""

from __future__ import annotations

import asyncio
import ssl
import tempfile
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path
from types import SimpleNamespace
from typing import Any
from urllib.parse import parse_qsl

import uvloop
from picows import WSUpgradeRequest, ws_create_server

from engine._core import StreamReader
from engine.config import Config
from engine.runtime import Runtime
from engine.ws.hub import PullHub
from engine.ws.pull import pull_endpoint
from engine.ws.router import ENDPOINTS

LOOPS = {"asyncio": asyncio.new_event_loop, "uvloop": uvloop.new_event_loop}


def run(loop: str, main: Callable[[], Awaitable[None]]) -> None:
    with asyncio.Runner(loop_factory=LOOPS[loop]) as runner:
        runner.run(main())  # type: ignore[arg-type]


async def open_runtime(
    redis_url: str, linger: float = 0.1, notify_past: int | None = None, **feed_options: int
) -> Runtime:
    """A Runtime on ``redis_url`` whose pull feeds linger ``linger`` seconds."""
    config = Config(redis_url=redis_url, data_dir=Path(tempfile.gettempdir()), secret="in-process")
    runtime = await Runtime.open(config)
    await runtime.pulls.close()
    runtime.pulls = PullHub(
        runtime.shards,
        [node.address for node in runtime.pulls.nodes],
        runtime.counters,
        linger=linger,
        feed_options=feed_options,
        most_hot=runtime.pulls.most_hot,
        notify_past=notify_past,
    )
    if runtime.cluster is not None:
        runtime.cluster.on_slots_moved = runtime.pulls.remap
    return runtime


class FaultyReaders:
    """A shard map whose ``reader_for_key`` works ``uses`` times, then raises."""

    def __init__(self, readers: Any, uses: int):
        self.readers = readers
        self.uses = uses

    def reader_for_key(self, key: bytes) -> StreamReader | None:
        self.uses -= 1
        if self.uses < 0:
            raise RuntimeError("injected fault")
        reader: StreamReader | None = self.readers.reader_for_key(key)
        return reader


@dataclass
class Served:
    runtime: Runtime
    server: Any
    port: int

    async def close(self) -> None:
        self.server.close()
        await self.runtime.close()


async def serve(runtime: Runtime, tls: ssl.SSLContext | None = None) -> Served:
    """``/data/{sid}/push`` and ``/data/{sid}/pull`` of ``runtime`` on a free port.
    A pull socket whose query has ``fault=N`` reads from Redis through readers
    that fail after N uses."""

    def route(request: WSUpgradeRequest) -> Any:
        path, _, query_text = request.path.decode().partition("?")
        _, _, sid_text, endpoint = path.split("/")
        sids = sid_text.split("+")
        query = dict(parse_qsl(query_text))
        if "fault" in query:
            faulty = FaultyReaders(runtime.shards, int(query.pop("fault")))
            own = SimpleNamespace(pulls=runtime.pulls, shards=faulty, counters=runtime.counters)
            return pull_endpoint(own, sids, query, "test")  # type: ignore[arg-type]
        return ENDPOINTS[endpoint](runtime, sids, query, "test")

    server = await ws_create_server(route, "127.0.0.1", 0, ssl=tls)
    return Served(runtime, server, server.sockets[0].getsockname()[1])


async def pull_server(
    redis_url: str, tls: ssl.SSLContext | None = None, notify_past: int | None = None, **feed_options: int
) -> Served:
    """A runtime on ``redis_url`` served in-process (feeds of ``feed_options``;
    keyspace notifications past ``notify_past`` followed streams)."""
    return await serve(await open_runtime(redis_url, notify_past=notify_past, **feed_options), tls)
